// Wire conversion: what goes into mailhook.v1 comes back out unchanged,
// for every field. Two guards against a field added and not converted:
// the proto side is filled by reflection (a new proto field is filled and
// must survive proto -> mailcore -> proto), and the mailcore side is
// compared through structured bindings (a new member does not compile
// until it is compared here).
#include "mailcore/wire/convert.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <tuple>

using namespace mailhook;
namespace pb = google::protobuf;

namespace {

// Every member of a SessionEvent, in order: the binding fails to compile
// when SessionEvent gains one, so the comparison below cannot skip it.
auto members(const SessionEvent& e) {
  const auto& [seq, kind, wants_reply, input, argument, address, parameters, chunk, default_reply, error_code,
               error_text, client, transaction_id, message_size, helo, sender, recipients, speculative] = e;
  return std::tie(seq, kind, wants_reply, input, argument, address, parameters, chunk, default_reply, error_code,
                  error_text, client, transaction_id, message_size, helo, sender, recipients, speculative);
}

auto members(const Decision& d) {
  const auto& [seq, action, reply, disconnect, changes, limits, ehlo_keywords, script, hook, skipped] = d;
  return std::tie(seq, action, reply, disconnect, changes, limits, ehlo_keywords, script, hook, skipped);
}

auto members(const SessionStart& s) {
  const auto& [session_id, local_host, shape, client, early_talker, limits] = s;
  return std::tie(session_id, local_host, shape, client, early_talker, limits);
}

// Fills every field of a message with a value of its own (no two fields
// alike, none the default), recursively. A repeated field gets two
// elements, or one per member of the element's oneof; `choice` picks the
// oneof member a message sets.
class EveryField {
 public:
  void fill(pb::Message* m, int choice = 0) {
    const pb::Descriptor* d = m->GetDescriptor();
    const pb::Reflection* r = m->GetReflection();
    for (int i = 0; i < d->field_count(); ++i) {
      const pb::FieldDescriptor* f = d->field(i);
      if (const pb::OneofDescriptor* o = f->real_containing_oneof(); o != nullptr && o->field(choice % o->field_count()) != f) {
        continue;
      }
      if (f->is_repeated()) {
        const int n = f->is_map() ? 2 : std::max(2, oneof_width(f));
        for (int k = 0; k < n; ++k) add(m, r, f, k);
      } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        fill(r->MutableMessage(m, f), choice);
      } else {
        set(m, r, f);
      }
    }
  }
 private:
  static int oneof_width(const pb::FieldDescriptor* f) {
    if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) return 0;
    int width = 0;
    for (int i = 0; i < f->message_type()->oneof_decl_count(); ++i) {
      const pb::OneofDescriptor* o = f->message_type()->oneof_decl(i);
      if (!o->is_synthetic()) width = std::max(width, o->field_count());
    }
    return width;
  }

  std::string text(const pb::FieldDescriptor* f) { return f->name() + "-" + std::to_string(++next_); }

  // Enums: the k-th non-zero value from the end (zero is the default),
  // so two elements of a repeated enum come out in ascending order.
  static int enum_value(const pb::FieldDescriptor* f, int k) {
    const pb::EnumDescriptor* e = f->enum_type();
    return e->value(e->value_count() - 1 - (k % (e->value_count() - 1)))->number();
  }

  void set(pb::Message* m, const pb::Reflection* r, const pb::FieldDescriptor* f) {
    using F = pb::FieldDescriptor;
    switch (f->cpp_type()) {
      case F::CPPTYPE_STRING:
        r->SetString(m, f, f->type() == F::TYPE_BYTES ? text(f) + std::string("\0\xff", 2) : text(f));
        break;
      case F::CPPTYPE_UINT32: r->SetUInt32(m, f, 100 + ++next_); break;
      case F::CPPTYPE_UINT64: r->SetUInt64(m, f, (1ull << 40) + ++next_); break;
      case F::CPPTYPE_INT32: r->SetInt32(m, f, -(100 + ++next_)); break;
      case F::CPPTYPE_INT64: r->SetInt64(m, f, -(1ll << 40) - ++next_); break;
      case F::CPPTYPE_BOOL: ++next_, r->SetBool(m, f, true); break;
      case F::CPPTYPE_ENUM: ++next_, r->SetEnumValue(m, f, enum_value(f, 0)); break;
      default: ADD_FAILURE() << "no filler for " << f->full_name() << ": extend EveryField"; break;
    }
  }

  void add(pb::Message* m, const pb::Reflection* r, const pb::FieldDescriptor* f, int k) {
    using F = pb::FieldDescriptor;
    switch (f->cpp_type()) {
      case F::CPPTYPE_MESSAGE: fill(r->AddMessage(m, f), k); break;
      case F::CPPTYPE_STRING: r->AddString(m, f, text(f)); break;
      case F::CPPTYPE_ENUM: ++next_, r->AddEnumValue(m, f, enum_value(f, 1 - k)); break;
      default: ADD_FAILURE() << "no filler for repeated " << f->full_name() << ": extend EveryField"; break;
    }
  }

  int next_ = 0;
};

// proto -> mailcore -> proto must give back the same message.
template <class Proto, class Convert>
void expect_round_trip(Proto filled, Convert convert) {
  ASSERT_GT(filled.ByteSizeLong(), 0u);
  const Proto before = filled;
  Proto after;
  convert(std::move(filled), &after);
  std::string diff;
  pb::util::MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  EXPECT_TRUE(d.Compare(before, after)) << before.GetTypeName()
                                        << " lost or changed in the round trip (convert the new field in "
                                           "mailcore/wire/convert.cc):\n"
                                        << diff;
}

template <class Proto>
Proto filled(int choice = 0) {
  Proto p;
  EveryField().fill(&p, choice);
  return p;
}

}  // namespace

TEST(Wire, EveryProtoFieldOfEventSurvivesTheRoundTrip) {
  expect_round_trip(filled<wire::v1::Event>(), [](wire::v1::Event&& p, wire::v1::Event* out) {
    wire::to_proto(wire::from_proto(std::move(p)), out);
  });
}

TEST(Wire, EveryProtoFieldOfSessionStartSurvivesTheRoundTrip) {
  expect_round_trip(filled<wire::v1::SessionStart>(), [](wire::v1::SessionStart&& p, wire::v1::SessionStart* out) {
    wire::to_proto(wire::from_proto(p), out);
  });
}

TEST(Wire, EveryProtoFieldOfDecisionAndEachMessageChangeSurvivesTheRoundTrip) {
  wire::v1::Decision p = filled<wire::v1::Decision>();
  // One change per member of the oneof, so every kind of change crosses.
  ASSERT_EQ(p.changes_size(), wire::v1::MessageChange::descriptor()->oneof_decl(0)->field_count());
  // rcpt_args belongs to add_rcpt (the proto says so): elsewhere it has no
  // meaning and is not carried.
  for (auto& c : *p.mutable_changes()) {
    if (c.change_case() != wire::v1::MessageChange::kAddRcpt) c.clear_rcpt_args();
  }
  ASSERT_EQ(p.action(), wire::v1::Decision::REPLY);  // a reply is carried only with REPLY
  expect_round_trip(p, [](wire::v1::Decision&& in, wire::v1::Decision* out) {
    wire::to_proto(wire::from_proto(in), out);
  });
}

TEST(Wire, EveryProtoFieldOfCapabilitiesSurvivesTheRoundTrip) {
  expect_round_trip(filled<wire::v1::Capabilities>(), [](wire::v1::Capabilities&& p, wire::v1::Capabilities* out) {
    wire::to_proto(wire::from_proto(p), out);
  });
}

TEST(Wire, EventRoundTripsEveryField) {
  SessionEvent e{.seq = 7, .kind = EventKind::Rcpt, .wants_reply = true, .input = "RCPT TO:<a@b>",
                 .argument = "TO:<a@b>", .address = "a@b", .parameters = {{"NOTIFY", "NEVER"}},
                 .chunk = std::string("x\0y", 3), .default_reply = Reply{250, "2.1.5", {"Ok"}},
                 .error_code = 5, .error_text = "EIO",
                 .client = ClientFacts{.address = "192.0.2.1", .port = 25, .host = "c.example",
                                       .local_address = "192.0.2.25", .local_port = 2525, .tls_protocol = "TLSv1.3",
                                       .tls_cipher = "TLS_AES_256_GCM_SHA384", .auth_user = "u",
                                       .attributes = {{"i", "Q1"}, {"j", "mx"}}},
                 .transaction_id = "T1", .message_size = 99, .helo = "c.example", .sender = "s@x",
                 .recipients = {"r1@x", "r2@x"}};
  const SessionEvent copy = e;
  wire::v1::Event p;
  wire::to_proto(std::move(e), &p);
  const SessionEvent back = wire::from_proto(std::move(p));
  EXPECT_TRUE(members(back) == members(copy));
}

TEST(Wire, SessionStartRoundTripsEveryField) {
  const SessionStart s{.session_id = "S1", .local_host = "mx.example", .shape = Shape::Milter,
                       .client = ClientFacts{.address = "2001:db8::1", .port = 4000, .attributes = {{"k", "v"}}},
                       .early_talker = true, .limits = SessionLimits{1000, 10, 998}};
  wire::v1::SessionStart p;
  wire::to_proto(s, &p);
  EXPECT_TRUE(members(wire::from_proto(p)) == members(s));
}

TEST(Wire, DecisionRoundTripsChanges) {
  Decision d = Decision::respond(3, Reply{550, "5.7.1", {"a", "b"}}, true);
  d.script = "policy.lua";  // who decided, for the front's refusal line
  d.hook = "rcpt";
  d.limits = SessionLimits{1u << 20, 5, 1000};
  d.ehlo_keywords = {"SIZE 1000", "8BITMIME"};
  d.changes = {{.kind = MessageChange::Kind::ChangeHeader, .name = "X", .index = 2, .erase = true},
               {.kind = MessageChange::Kind::AddRcpt, .name = "NOTIFY=NEVER", .value = "r@x"},
               {.kind = MessageChange::Kind::Discard}};
  wire::v1::Decision p;
  wire::to_proto(d, &p);
  const Decision back = wire::from_proto(p);
  EXPECT_TRUE(members(back) == members(d));
  EXPECT_EQ(back.changes, d.changes);
}

TEST(Wire, CapabilitiesRoundTrip) {
  Capabilities c;
  c.events.add(EventKind::Helo);
  c.events.add(EventKind::EndOfMessage);
  c.wants_message = true;
  c.policy_name = "a.lua,b.lua (shadow)";
  wire::v1::Capabilities p;
  wire::to_proto(c, &p);
  Capabilities back = wire::from_proto(p);
  EXPECT_EQ(back.events, c.events);
  EXPECT_TRUE(back.wants_message);
  EXPECT_EQ(back.policy_name, c.policy_name);
}
