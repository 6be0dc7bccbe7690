# Debian packages, one per daemon, by CPack (`cpack -G DEB` in the build
# directory): mailhook-front (the front and mailhook-probe) and
# mailhook-policyd (policyd, the Lua policy and examples). Each carries its
# systemd unit, a default config in /etc/mailhook (conffiles) and the
# maintainer scripts that create the mailhook user. The files under /etc
# and /lib are EXCLUDE_FROM_ALL: a plain `cmake --install --prefix P`
# (deploy/docker/scripts/build.sh) never writes outside P.
set(MAILHOOK_DEB_DIR ${CMAKE_SOURCE_DIR}/deploy/debian)

foreach(pkg front policyd)
  install(FILES ${MAILHOOK_DEB_DIR}/systemd/mailhook-${pkg}.service DESTINATION /lib/systemd/system
          COMPONENT ${pkg} EXCLUDE_FROM_ALL)
  install(FILES ${MAILHOOK_DEB_DIR}/etc/${pkg}.conf DESTINATION /etc/mailhook COMPONENT ${pkg} EXCLUDE_FROM_ALL)
  install(FILES README.md DESTINATION share/doc/mailhook-${pkg} COMPONENT ${pkg} EXCLUDE_FROM_ALL)
endforeach()
install(FILES lua/policy.lua DESTINATION /etc/mailhook COMPONENT policyd EXCLUDE_FROM_ALL)
install(FILES deploy/postfix/main.cf.snippet DESTINATION share/doc/mailhook-policyd COMPONENT policyd EXCLUDE_FROM_ALL)

# Maintainer scripts and conffiles per package, from the templates.
set(front_dirs /var/spool/mailhook)
set(policyd_dirs /var/spool/mailhook-policyd)
set(front_conffiles /etc/mailhook/front.conf)
set(policyd_conffiles "/etc/mailhook/policyd.conf\n/etc/mailhook/policy.lua")
foreach(pkg front policyd)
  set(MAILHOOK_UNIT mailhook-${pkg}.service)
  set(MAILHOOK_WRITABLE_DIRS ${${pkg}_dirs})
  set(control ${CMAKE_BINARY_DIR}/debian/${pkg})
  foreach(script postinst prerm postrm)
    configure_file(${MAILHOOK_DEB_DIR}/maint/${script} ${control}/${script} @ONLY
                   FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                                    WORLD_READ WORLD_EXECUTE)
  endforeach()
  file(WRITE ${control}/conffiles "${${pkg}_conffiles}\n")
  string(TOUPPER ${pkg} PKG)
  set(CPACK_DEBIAN_${PKG}_PACKAGE_CONTROL_EXTRA
      "${control}/postinst;${control}/prerm;${control}/postrm;${control}/conffiles")
  set(CPACK_DEBIAN_${PKG}_PACKAGE_NAME mailhook-${pkg})
endforeach()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mailhook)
set(CPACK_PACKAGE_VENDOR mailhook)
set(CPACK_PACKAGE_CONTACT "mailhook maintainers <postmaster@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES TRUE)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL front policyd)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_DEBIAN_FRONT_DESCRIPTION "mailhook SMTP front\n The SMTP front of mailhook: receives mail, asks mailhook-policyd at\n every SMTP step over gRPC, spools accepted mail or relays it.")
set(CPACK_DEBIAN_POLICYD_DESCRIPTION "mailhook policy daemon\n Runs SMTP policy written in Lua 5.4 for mailhook-front (gRPC) and\n for Postfix or Sendmail (milter protocol).")
set(CPACK_DEBIAN_FRONT_PACKAGE_RECOMMENDS mailhook-policyd)
# DMARC finds organisational domains in the system's public suffix list
# (libpsl), else in the copy built into libpsl.
set(CPACK_DEBIAN_POLICYD_PACKAGE_RECOMMENDS publicsuffix)
include(CPack)
