// Field-by-field mapping between the event vocabulary and mailhook.v1.
#include "mailcore/wire/convert.h"

#include <utility>

namespace mailhook::wire {
namespace {

void facts_to_proto(const ClientFacts& in, v1::ClientFacts* out) {
  out->set_address(in.address);
  out->set_port(in.port);
  out->set_host(in.host);
  out->set_local_address(in.local_address);
  out->set_local_port(in.local_port);
  out->set_tls_protocol(in.tls_protocol);
  out->set_tls_cipher(in.tls_cipher);
  out->set_auth_user(in.auth_user);
  for (const auto& [k, v] : in.attributes) (*out->mutable_attributes())[k] = v;
}

ClientFacts facts_from_proto(const v1::ClientFacts& in) {
  ClientFacts out;
  out.address = in.address();
  out.port = in.port();
  out.host = in.host();
  out.local_address = in.local_address();
  out.local_port = in.local_port();
  out.tls_protocol = in.tls_protocol();
  out.tls_cipher = in.tls_cipher();
  out.auth_user = in.auth_user();
  for (const auto& [k, v] : in.attributes()) out.attributes.emplace(k, v);
  return out;
}

void limits_to_proto(const SessionLimits& in, v1::SessionLimits* out) {
  out->set_max_message_size(in.max_message_size);
  out->set_max_recipients(in.max_recipients);
  out->set_max_line_length(in.max_line_length);
}

SessionLimits limits_from_proto(const v1::SessionLimits& in) {
  return SessionLimits{in.max_message_size(), in.max_recipients(), in.max_line_length()};
}

void header_to_proto(const MessageChange& in, v1::Header* out) {
  out->set_name(in.name);
  out->set_value(in.value);
  out->set_index(in.index);
  out->set_delete_(in.erase);
}

MessageChange header_from_proto(MessageChange::Kind kind, const v1::Header& in) {
  return MessageChange{.kind = kind, .name = in.name(), .value = in.value(),
                       .index = in.index(), .erase = in.delete_()};
}

}  // namespace

void to_proto(const Reply& in, v1::Reply* out) {
  out->set_code(static_cast<std::uint32_t>(in.code));
  out->set_enhanced_code(in.enhanced);
  for (const auto& line : in.lines) out->add_lines(line);
}

Reply from_proto(const v1::Reply& in) {
  Reply out;
  out.code = static_cast<int>(in.code());
  out.enhanced = in.enhanced_code();
  out.lines.assign(in.lines().begin(), in.lines().end());
  return out;
}

void to_proto(const SessionStart& in, v1::SessionStart* out) {
  out->set_session_id(in.session_id);
  out->set_local_host(in.local_host);
  out->set_shape(in.shape == Shape::Milter ? v1::SHAPE_MILTER : v1::SHAPE_FRONT);
  facts_to_proto(in.client, out->mutable_client());
  out->set_early_talker(in.early_talker);
  limits_to_proto(in.limits, out->mutable_limits());
}

SessionStart from_proto(const v1::SessionStart& in) {
  SessionStart out;
  out.session_id = in.session_id();
  out.local_host = in.local_host();
  out.shape = in.shape() == v1::SHAPE_MILTER ? Shape::Milter : Shape::Front;
  out.client = facts_from_proto(in.client());
  out.early_talker = in.early_talker();
  out.limits = limits_from_proto(in.limits());
  return out;
}

void to_proto(SessionEvent&& in, v1::Event* out) {
  out->set_seq(in.seq);
  out->set_kind(static_cast<v1::EventKind>(in.kind));
  out->set_wants_reply(in.wants_reply);
  out->set_input(std::move(in.input));
  out->set_argument(std::move(in.argument));
  out->set_address(std::move(in.address));
  for (auto& p : in.parameters) {
    auto* pp = out->add_parameters();
    pp->set_name(std::move(p.name));
    pp->set_value(std::move(p.value));
  }
  out->set_chunk(std::move(in.chunk));
  if (in.default_reply) to_proto(*in.default_reply, out->mutable_default_reply());
  out->set_error_code(in.error_code);
  out->set_error_text(std::move(in.error_text));
  if (in.client) facts_to_proto(*in.client, out->mutable_client());
  out->set_transaction_id(std::move(in.transaction_id));
  out->set_helo(std::move(in.helo));
  out->set_message_size(in.message_size);
  out->set_sender(std::move(in.sender));
  for (auto& r : in.recipients) out->add_recipients(std::move(r));
  out->set_speculative(in.speculative);
}

SessionEvent from_proto(v1::Event&& in) {
  SessionEvent out;
  out.seq = in.seq();
  const int kind = in.kind();
  // An unknown kind from a newer front is answered CONTINUE by the runtime.
  out.kind = (kind > 0 && kind < kEventKindCount) ? static_cast<EventKind>(kind) : EventKind::Noop;
  out.wants_reply = in.wants_reply();
  out.input = std::move(*in.mutable_input());
  out.argument = std::move(*in.mutable_argument());
  out.address = std::move(*in.mutable_address());
  out.parameters.reserve(static_cast<std::size_t>(in.parameters_size()));
  for (auto& p : *in.mutable_parameters()) {
    out.parameters.push_back(Parameter{std::move(*p.mutable_name()), std::move(*p.mutable_value())});
  }
  out.chunk = std::move(*in.mutable_chunk());
  if (in.has_default_reply()) out.default_reply = from_proto(in.default_reply());
  out.error_code = in.error_code();
  out.error_text = std::move(*in.mutable_error_text());
  if (in.has_client()) out.client = facts_from_proto(in.client());
  out.transaction_id = std::move(*in.mutable_transaction_id());
  out.helo = std::move(*in.mutable_helo());
  out.message_size = in.message_size();
  out.sender = std::move(*in.mutable_sender());
  out.recipients.reserve(static_cast<std::size_t>(in.recipients_size()));
  for (auto& r : *in.mutable_recipients()) out.recipients.push_back(std::move(r));
  out.speculative = in.speculative();
  return out;
}

void to_proto(const Decision& in, v1::Decision* out) {
  out->set_seq(in.seq);
  out->set_action(in.action == Decision::Action::Reply ? v1::Decision::REPLY : v1::Decision::CONTINUE);
  if (in.action == Decision::Action::Reply) to_proto(in.reply, out->mutable_reply());
  out->set_disconnect(in.disconnect);
  for (const auto& c : in.changes) {
    auto* pc = out->add_changes();
    switch (c.kind) {
      case MessageChange::Kind::AddHeader: header_to_proto(c, pc->mutable_add_header()); break;
      case MessageChange::Kind::InsertHeader: header_to_proto(c, pc->mutable_insert_header()); break;
      case MessageChange::Kind::ChangeHeader: header_to_proto(c, pc->mutable_change_header()); break;
      case MessageChange::Kind::AddRcpt:
        pc->set_add_rcpt(c.value);
        pc->set_rcpt_args(c.name);
        break;
      case MessageChange::Kind::DelRcpt: pc->set_del_rcpt(c.value); break;
      case MessageChange::Kind::ChangeFrom: pc->set_change_from(c.value); break;
      case MessageChange::Kind::ReplaceBody: pc->set_replace_body(c.value); break;
      case MessageChange::Kind::Quarantine: pc->set_quarantine(c.value); break;
      case MessageChange::Kind::Discard: pc->set_discard(true); break;
    }
  }
  if (in.limits) limits_to_proto(*in.limits, out->mutable_limits());
  for (const auto& k : in.ehlo_keywords) out->add_ehlo_keywords(k);
  out->set_script(in.script);
  out->set_hook(in.hook);
  out->set_skipped(in.skipped);
}

Decision from_proto(const v1::Decision& in) {
  Decision out;
  out.seq = in.seq();
  out.action = in.action() == v1::Decision::REPLY ? Decision::Action::Reply : Decision::Action::Continue;
  if (in.has_reply()) out.reply = from_proto(in.reply());
  out.disconnect = in.disconnect();
  using K = MessageChange::Kind;
  for (const auto& c : in.changes()) {
    switch (c.change_case()) {
      case v1::MessageChange::kAddHeader: out.changes.push_back(header_from_proto(K::AddHeader, c.add_header())); break;
      case v1::MessageChange::kInsertHeader: out.changes.push_back(header_from_proto(K::InsertHeader, c.insert_header())); break;
      case v1::MessageChange::kChangeHeader: out.changes.push_back(header_from_proto(K::ChangeHeader, c.change_header())); break;
      case v1::MessageChange::kAddRcpt:
        out.changes.push_back({.kind = K::AddRcpt, .name = c.rcpt_args(), .value = c.add_rcpt()});
        break;
      case v1::MessageChange::kDelRcpt: out.changes.push_back({.kind = K::DelRcpt, .value = c.del_rcpt()}); break;
      case v1::MessageChange::kChangeFrom: out.changes.push_back({.kind = K::ChangeFrom, .value = c.change_from()}); break;
      case v1::MessageChange::kReplaceBody: out.changes.push_back({.kind = K::ReplaceBody, .value = c.replace_body()}); break;
      case v1::MessageChange::kQuarantine: out.changes.push_back({.kind = K::Quarantine, .value = c.quarantine()}); break;
      case v1::MessageChange::kDiscard: out.changes.push_back({.kind = K::Discard}); break;
      case v1::MessageChange::CHANGE_NOT_SET: break;
    }
  }
  if (in.has_limits()) out.limits = limits_from_proto(in.limits());
  out.ehlo_keywords.assign(in.ehlo_keywords().begin(), in.ehlo_keywords().end());
  out.script = in.script();
  out.hook = in.hook();
  out.skipped = in.skipped();
  return out;
}

void to_proto(const Capabilities& in, v1::Capabilities* out) {
  for (int k = 1; k < kEventKindCount; ++k) {
    if (in.events.has(static_cast<EventKind>(k))) out->add_events(static_cast<v1::EventKind>(k));
  }
  out->set_wants_message(in.wants_message);
  out->set_policy_name(in.policy_name);
  out->set_honours_speculative(in.honours_speculative);
}

Capabilities from_proto(const v1::Capabilities& in) {
  Capabilities out;
  for (int k : in.events()) {
    if (k > 0 && k < kEventKindCount) out.events.add(static_cast<EventKind>(k));
  }
  out.wants_message = in.wants_message();
  out.policy_name = in.policy_name();
  out.honours_speculative = in.honours_speculative();
  return out;
}

}  // namespace mailhook::wire
