#!/bin/sh
# Builds the container images with podman and proves the product through
# them: policyd + front as two containers (health checks, spooling into a
# host directory, relaying to a smart host, policyd killed -> 4.3.0 with
# nothing accepted lost, restarted -> 250, the mounted policy reloaded by
# SIGHUP), then compose.yaml through podman-compose with Postfix using
# policyd as its milter. Prints PASS/FAIL per step, image sizes and times;
# exits non-zero on any failure; removes every container, network and
# volume it started. Needs podman, podman-compose, mmdebstrap (./dev test
# installs them: deploy/debian/packages-test.txt) and root or rootless podman.
#
#   deploy/docker/test-images.sh          images from the programs of build/
#                                         (./dev build first; ctest deploy.images)
#   deploy/docker/test-images.sh --full   the real multi-stage build, as a user
#                                         would (compiles everything in the image)
#   options: --build-dir DIR, --timeout SECONDS (default 900, 5400 with --full)
set -eu
# -B: no __pycache__ in the source tree.
exec python3 -B "$(dirname "$0")/test/images.py" "$@"
