// The spool over a real directory (issue 19 finding 6): a message already
// in the spool under the target name is never replaced, and another
// front's temp file of the same name is left alone; the writer fails
// (the client then gets 452 4.3.1) instead.
#include "frontend/delivery/spool.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>

using namespace mailhook;
using namespace mailhook::front;
namespace fs = std::filesystem;

namespace {

class SpoolDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mailhook-spool-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(Spool& spool, const std::string& queue_id) {
    Envelope e;
    e.session_id = "S";
    e.queue_id = queue_id;
    e.sender = "a@example.com";
    e.recipients = {"b@example.com"};
    const std::string received = "Received: x\r\n", message = "Subject: new\r\n\r\nnew\r\n";
    std::promise<std::string> done;
    spool.async_write(e, received, message, [&done](std::string error) { done.set_value(std::move(error)); });
    return done.get_future().get();
  }

  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string dir_;
};

}  // namespace

TEST_F(SpoolDir, AnExistingMessageIsNeverReplaced) {
  Spool spool(dir_);
  ASSERT_EQ(spool.prepare(), "");
  const fs::path accepted = fs::path(dir_) / "ID1T1.eml";
  std::ofstream(accepted) << "already answered 250\r\n";
  const std::string error = write(spool, "ID1T1");
  EXPECT_NE(error.find("refusing to replace"), std::string::npos) << error;
  EXPECT_EQ(read(accepted), "already answered 250\r\n");
  EXPECT_FALSE(fs::exists(fs::path(dir_) / ".tmp-ID1T1"));  // ours is cleaned up
}

TEST_F(SpoolDir, AnotherWritersTempFileIsLeftAlone) {
  Spool spool(dir_);
  ASSERT_EQ(spool.prepare(), "");
  const fs::path theirs = fs::path(dir_) / ".tmp-ID2T1";
  std::ofstream(theirs) << "another front is writing this";
  EXPECT_NE(write(spool, "ID2T1"), "");
  EXPECT_EQ(read(theirs), "another front is writing this");
  EXPECT_FALSE(fs::exists(fs::path(dir_) / "ID2T1.eml"));
}

TEST_F(SpoolDir, AFreshNameIsWritten) {
  Spool spool(dir_);
  ASSERT_EQ(spool.prepare(), "");
  EXPECT_EQ(write(spool, "ID3T1"), "");
  EXPECT_NE(read(fs::path(dir_) / "ID3T1.eml").find("Subject: new"), std::string::npos);
}
