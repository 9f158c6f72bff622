//! The pure core of the DNS server: one query in, one [`Action`] out.
//!
//! [`answer`] does no I/O and reads no clock (STYLE items 1 and 2): it takes
//! the name table, the network the query arrived on, the asker's address,
//! the raw query bytes and the transport, and decides to reply (with the
//! encoded bytes), to forward, or to drop. Every parse and every encoding
//! goes through hickory-proto; nothing here writes DNS wire format by hand.
//!
//! Hostile input is cheap to refuse. Before hickory parses the whole
//! message, the 12-byte header is read on its own and the section counts
//! are checked: hickory reserves `Vec` capacity from the counts, so a
//! QDCOUNT of 65535 in a 20-byte datagram would otherwise allocate
//! megabytes. The order of checks:
//!
//! 1. shorter than a header → drop (there is no id to answer);
//! 2. a response (QR set) → drop (never answer answers: no reflection loops);
//! 3. longer than [`MAX_QUERY`], opcode other than QUERY (NOTIMP), QDCOUNT
//!    not 1, more than [`MAX_QUERY_RECORDS`] records → an error reply built
//!    from the header alone;
//! 4. hickory refuses the message (compression loops, pointers forward,
//!    labels over 63 bytes, names over 255, truncation) → FORMERR.
//!
//! Then the name: labels are lower-cased and joined with dots (a trailing
//! dot, i.e. an absolute name, changes nothing). `d.c.b.a.in-addr.arpa` PTR
//! queries for endpoint addresses answer `name.network.`; local names answer
//! A records (every address of a shared alias, shuffled per query) or an
//! empty NOERROR for other types; anything else is forwarded, except for
//! a sandbox that is only on internal networks, which gets NXDOMAIN.
//!
//! Over UDP, answers are cut to the client's size (512 bytes without EDNS,
//! its EDNS size otherwise, at most the server's bound) by hickory's encoder,
//! which drops whole records and sets TC.

use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use super::table::NameTable;

/// TTL of local answers (Docker's).
pub const LOCAL_TTL: u32 = 600;

/// Largest query accepted, in bytes. Real queries are a few hundred bytes;
/// this also bounds hickory's work on one message.
pub const MAX_QUERY: usize = 4096;

/// Most records (answer + authority + additional) accepted in a query.
pub const MAX_QUERY_RECORDS: u16 = 8;

/// Largest UDP answer ever sent (and the EDNS size advertised).
pub const MAX_UDP_ANSWER: u16 = 4096;

/// UDP answer size without EDNS (RFC 1035).
pub const MIN_UDP_ANSWER: u16 = 512;

/// How a query arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP; answers are cut to the client's size, at most `max` bytes.
    Udp {
        /// The server's own bound (from the MTU), at least 512.
        max: u16,
    },
    /// TCP; answers up to 65535 bytes.
    Tcp,
}

/// One query to answer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The network it arrived on.
    pub network: &'a str,
    /// The asker's address (already verified by the switch's anti-spoofing).
    pub asker: Ipv4Addr,
    /// The DNS message as received (without the TCP length prefix).
    pub bytes: &'a [u8],
    /// How it arrived.
    pub transport: Transport,
}

/// What to do with a query.
#[derive(Debug)]
pub enum Action {
    /// Send these bytes back.
    Reply(Reply),
    /// Not a local name: ask the upstream resolvers.
    Forward(Forward),
    /// Send nothing.
    Drop(DropReason),
}

/// An encoded answer and what it was, for the counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The encoded message.
    pub bytes: Vec<u8>,
    /// Its response code.
    pub rcode: ResponseCode,
    /// Answered from the name table (NOERROR, empty NOERROR or NXDOMAIN).
    pub local: bool,
    /// The query was malformed (FORMERR, NOTIMP).
    pub malformed: bool,
    /// Records were cut and TC set.
    pub truncated: bool,
}

impl Reply {
    /// SERVFAIL for `query`, cut to `limit`.
    pub fn servfail(query: &Message, limit: u16) -> Reply {
        Reply {
            bytes: error_answer(query, ResponseCode::ServFail, limit),
            rcode: ResponseCode::ServFail,
            local: false,
            malformed: false,
            truncated: false,
        }
    }

    /// What the client of a forwarded `query` gets: the upstream's answer
    /// made to fit `limit` ([`fit_forwarded`]), or SERVFAIL when there is
    /// none or it has no readable header.
    pub fn forwarded<E>(query: &Message, upstream: Result<Vec<u8>, E>, limit: u16) -> Reply {
        match upstream.map(|a| fit_forwarded(query, a, limit)) {
            Ok(Some((bytes, rcode, truncated))) => Reply {
                bytes,
                rcode,
                local: false,
                malformed: false,
                truncated,
            },
            Ok(None) | Err(_) => Reply::servfail(query, limit),
        }
    }
}

/// A query for the upstream resolvers.
#[derive(Debug)]
pub struct Forward {
    /// The parsed query, to build SERVFAIL or truncated answers from.
    pub query: Message,
    /// The query as received, relayed as is (but for its id).
    pub bytes: Vec<u8>,
    /// Largest answer the client takes (its UDP size, or 65535 over TCP).
    pub limit: u16,
}

/// Why a query got no answer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than a DNS header: there is no id to answer to.
    TooShort,
    /// A response, not a query.
    NotAQuery,
}

/// A small, fast, non-cryptographic PRNG (xorshift64*), for shuffling
/// round-robin answers.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Shuffle `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Decide what to do with one query. See the module documentation.
pub fn answer(table: &NameTable, req: &Request<'_>, rng: &mut Rng) -> Action {
    let header = match Header::read(&mut BinDecoder::new(req.bytes)) {
        Ok(header) => header,
        Err(_) => return Action::Drop(DropReason::TooShort),
    };
    if header.message_type() != MessageType::Query {
        return Action::Drop(DropReason::NotAQuery);
    }
    if req.bytes.len() > MAX_QUERY {
        return Action::Reply(header_error(&header, ResponseCode::FormErr));
    }
    if header.op_code() != OpCode::Query {
        return Action::Reply(header_error(&header, ResponseCode::NotImp));
    }
    let records = u32::from(header.answer_count())
        + u32::from(header.name_server_count())
        + u32::from(header.additional_count());
    if header.query_count() != 1 || records > u32::from(MAX_QUERY_RECORDS) {
        return Action::Reply(header_error(&header, ResponseCode::FormErr));
    }
    let query = match Message::from_vec(req.bytes) {
        Ok(query) => query,
        Err(_) => return Action::Reply(header_error(&header, ResponseCode::FormErr)),
    };
    let Some(question) = query.queries().first() else {
        return Action::Reply(header_error(&header, ResponseCode::FormErr));
    };
    let limit = client_limit(&query, req.transport);

    let Some(flags) = table.network(req.network) else {
        // The control plane has not told this switch about its network yet:
        // do not guess whether it may forward.
        return Action::Reply(response(
            &query,
            ResponseCode::ServFail,
            Vec::new(),
            limit,
            false,
        ));
    };

    if matches!(question.query_class(), DNSClass::IN | DNSClass::ANY) {
        if let Some(key) = name_key(question.name()) {
            if question.query_type() == RecordType::PTR {
                if let Some(target) =
                    parse_reverse(&key).and_then(|ip| table.reverse(req.network, req.asker, ip))
                {
                    let record = Record::from_rdata(
                        question.name().clone(),
                        LOCAL_TTL,
                        RData::PTR(PTR(target.clone())),
                    );
                    return Action::Reply(response(
                        &query,
                        ResponseCode::NoError,
                        vec![record],
                        limit,
                        true,
                    ));
                }
            }
            if let Some(addrs) = table.lookup(req.network, req.asker, &key) {
                let records = match question.query_type() {
                    RecordType::A | RecordType::ANY => {
                        let mut addrs = addrs.to_vec();
                        rng.shuffle(&mut addrs);
                        addrs
                            .into_iter()
                            .map(|ip| {
                                Record::from_rdata(
                                    question.name().clone(),
                                    LOCAL_TTL,
                                    RData::A(A(ip)),
                                )
                            })
                            .collect()
                    }
                    // The name exists, with no record of this type.
                    _ => Vec::new(),
                };
                return Action::Reply(response(
                    &query,
                    ResponseCode::NoError,
                    records,
                    limit,
                    true,
                ));
            }
        }
    }

    if flags.internal && !table.forwards_for(req.network, req.asker) {
        // A sandbox only on internal networks never has its queries
        // forwarded: nothing leaks through DNS. One also on an external
        // network can reach the outside anyway, and Docker forwards for it
        // whatever network the query arrived on.
        return Action::Reply(response(
            &query,
            ResponseCode::NXDomain,
            Vec::new(),
            limit,
            true,
        ));
    }
    Action::Forward(Forward {
        query,
        bytes: req.bytes.to_vec(),
        limit,
    })
}

/// The answer to `query` with `rcode` and no records (SERVFAIL when the
/// upstreams fail, for instance), cut to `limit`.
pub fn error_answer(query: &Message, rcode: ResponseCode, limit: u16) -> Vec<u8> {
    response(query, rcode, Vec::new(), limit, false).bytes
}

/// An upstream's answer to `query`, made to fit `limit`: as is when it fits,
/// otherwise the question alone with the upstream's response code and TC
/// set, so the client retries over TCP. `None` when the upstream's answer
/// has no readable header.
pub fn fit_forwarded(
    query: &Message,
    upstream: Vec<u8>,
    limit: u16,
) -> Option<(Vec<u8>, ResponseCode, bool)> {
    let header = Header::read(&mut BinDecoder::new(&upstream)).ok()?;
    let rcode = header.response_code();
    if upstream.len() <= usize::from(limit) {
        return Some((upstream, rcode, false));
    }
    let mut msg = build(query, rcode, Vec::new(), false);
    msg.set_truncated(true);
    let bytes = encode(&msg, limit)?.0;
    Some((bytes, rcode, true))
}

/// The UDP size the client takes: 512 without EDNS, its EDNS size
/// otherwise, bounded by the server's.
fn client_limit(query: &Message, transport: Transport) -> u16 {
    match transport {
        Transport::Tcp => u16::MAX,
        Transport::Udp { max } => {
            let max = max.clamp(MIN_UDP_ANSWER, MAX_UDP_ANSWER);
            let asked = query
                .extensions()
                .as_ref()
                .map_or(MIN_UDP_ANSWER, Edns::max_payload);
            asked.clamp(MIN_UDP_ANSWER, max)
        }
    }
}

/// A response to `query`: its id, question, RD and CD, our EDNS when it
/// had EDNS, and `records` as answers (as many as fit in `limit`).
fn response(
    query: &Message,
    rcode: ResponseCode,
    records: Vec<Record>,
    limit: u16,
    local: bool,
) -> Reply {
    match encode(&build(query, rcode, records, local), limit) {
        Some((bytes, truncated)) => Reply {
            bytes,
            rcode,
            local,
            malformed: false,
            truncated,
        },
        // Cannot happen for a question that parsed (at most 260 bytes);
        // answer SERVFAIL from the header rather than nothing.
        None => header_error(query.header(), ResponseCode::ServFail),
    }
}

/// The message [`response`] encodes.
fn build(query: &Message, rcode: ResponseCode, records: Vec<Record>, local: bool) -> Message {
    let mut msg = Message::new();
    msg.set_header(Header::response_from_request(query.header()));
    msg.set_authoritative(local && rcode != ResponseCode::ServFail);
    msg.set_recursion_available(true);
    msg.set_response_code(rcode);
    msg.add_queries(query.queries().iter().cloned());
    msg.insert_answers(records);
    if query.extensions().is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_ANSWER);
        edns.set_version(0);
        msg.set_edns(edns);
    }
    msg
}

/// An error answer built from the header alone (no question): for queries
/// too broken to echo.
fn header_error(query: &Header, rcode: ResponseCode) -> Reply {
    let mut header = Header::response_from_request(query);
    header.set_response_code(rcode);
    let mut msg = Message::new();
    msg.set_header(header);
    let bytes = encode(&msg, MIN_UDP_ANSWER)
        .map(|(b, _)| b)
        .unwrap_or_default();
    Reply {
        bytes,
        rcode,
        local: false,
        malformed: matches!(rcode, ResponseCode::FormErr | ResponseCode::NotImp),
        truncated: false,
    }
}

/// Encode `msg` in at most `limit` bytes; hickory drops whole records that
/// do not fit and sets TC. Returns the bytes and whether TC is set.
fn encode(msg: &Message, limit: u16) -> Option<(Vec<u8>, bool)> {
    let mut bytes = Vec::with_capacity(usize::from(limit.min(MAX_UDP_ANSWER)));
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(limit);
    msg.emit(&mut encoder).ok()?;
    let truncated = Header::read(&mut BinDecoder::new(&bytes)).ok()?.truncated();
    Some((bytes, truncated))
}

/// The lookup key of `name`: labels lower-cased and joined with dots, no
/// trailing dot. `None` when a label holds a byte no sandbox name, alias or
/// network name can contain (names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`), so
/// such a name is never local and needs no escaping.
fn name_key(name: &Name) -> Option<String> {
    let mut key = String::with_capacity(name.len());
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            key.push('.');
        }
        for &b in label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            key.push(char::from(b.to_ascii_lowercase()));
        }
    }
    Some(key)
}

/// The address of `d.c.b.a.in-addr.arpa` (decimal octets without leading
/// zeros), or `None`.
fn parse_reverse(key: &str) -> Option<Ipv4Addr> {
    let prefix = key.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut labels = prefix.split('.');
    for slot in octets.iter_mut().rev() {
        let label = labels.next()?;
        let strict = !label.is_empty()
            && label.len() <= 3
            && label.bytes().all(|b| b.is_ascii_digit())
            && (label == "0" || !label.starts_with('0'));
        if !strict {
            return None;
        }
        *slot = label.parse().ok()?;
    }
    if labels.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::super::table::{EndpointInfo, NetworkInfo, SandboxInfo};
    use super::*;
    use hickory_proto::op::Query;
    use std::collections::HashSet;
    use std::str::FromStr;

    const UDP: Transport = Transport::Udp {
        max: MAX_UDP_ANSWER,
    };

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("address")
    }

    fn net(name: &str, third: u8, internal: bool) -> NetworkInfo {
        NetworkInfo {
            name: name.into(),
            internal,
            names_enabled: name != "bridge",
            gateway: Ipv4Addr::new(172, 20 + third, 0, 1),
        }
    }

    fn sandbox(name: &str, id: &str, eps: &[(&str, &str, &[&str])]) -> SandboxInfo {
        SandboxInfo {
            name: name.into(),
            short_id: id.into(),
            endpoints: eps
                .iter()
                .map(|(network, addr, aliases)| EndpointInfo {
                    network: network.to_string(),
                    ip: ip(addr),
                    aliases: aliases.iter().map(|a| a.to_string()).collect(),
                })
                .collect(),
        }
    }

    /// The seed's world: `dev` (es), `prod` (two `es`, hello), the
    /// `bridge`, an internal network, and a sandbox on both dev and prod.
    fn world() -> NameTable {
        NameTable::build(
            &[
                net("bridge", 0, false),
                net("dev", 1, false),
                net("prod", 2, false),
                net("secret", 3, true),
            ],
            &[
                sandbox("es", "e5e5e5e5e5e5", &[("dev", "172.21.0.2", &[])]),
                sandbox("dev-client", "d1d1d1d1d1d1", &[("dev", "172.21.0.3", &[])]),
                sandbox(
                    "prod-es-1",
                    "a1a1a1a1a1a1",
                    &[("prod", "172.22.0.2", &["es"])],
                ),
                sandbox(
                    "prod-es-2",
                    "a2a2a2a2a2a2",
                    &[("prod", "172.22.0.3", &["es", "search"])],
                ),
                sandbox("hello", "b0b0b0b0b0b0", &[("prod", "172.22.0.4", &["hi"])]),
                sandbox(
                    "both",
                    "c0c0c0c0c0c0",
                    &[("dev", "172.21.0.9", &[]), ("prod", "172.22.0.9", &[])],
                ),
                sandbox("bridged", "f0f0f0f0f0f0", &[("bridge", "172.20.0.2", &[])]),
                sandbox("bridged2", "f1f1f1f1f1f1", &[("bridge", "172.20.0.3", &[])]),
                sandbox("vault", "0a0a0a0a0a0a", &[("secret", "172.23.0.2", &[])]),
                sandbox("spy", "0b0b0b0b0b0b", &[("secret", "172.23.0.3", &[])]),
            ],
        )
    }

    fn query_bytes(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut msg = Message::new();
        msg.set_id(0x4242);
        msg.set_recursion_desired(true);
        msg.add_query(Query::query(Name::from_str(name).expect("name"), rtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            msg.set_edns(e);
        }
        msg.to_vec().expect("encode")
    }

    fn ask_bytes(
        table: &NameTable,
        network: &str,
        asker: &str,
        bytes: &[u8],
        transport: Transport,
    ) -> Action {
        let mut rng = Rng::new(7);
        answer(
            table,
            &Request {
                network,
                asker: ip(asker),
                bytes,
                transport,
            },
            &mut rng,
        )
    }

    fn ask(table: &NameTable, network: &str, asker: &str, name: &str, rtype: RecordType) -> Action {
        ask_bytes(table, network, asker, &query_bytes(name, rtype, None), UDP)
    }

    fn reply(action: Action) -> (Reply, Message) {
        match action {
            Action::Reply(reply) => {
                let msg = Message::from_vec(&reply.bytes).expect("reply parses");
                (reply, msg)
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn a_records(msg: &Message) -> Vec<Ipv4Addr> {
        msg.answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    fn resolve(table: &NameTable, network: &str, asker: &str, name: &str) -> Vec<Ipv4Addr> {
        match ask(table, network, asker, name, RecordType::A) {
            Action::Reply(r) => {
                let msg = Message::from_vec(&r.bytes).expect("parse");
                assert_eq!(msg.response_code(), ResponseCode::NoError, "{name}");
                a_records(&msg)
            }
            Action::Forward(_) => Vec::new(),
            Action::Drop(why) => panic!("{name} dropped: {why:?}"),
        }
    }

    #[test]
    fn names_resolve_on_their_network() {
        let t = world();
        let (r, msg) = reply(ask(&t, "dev", "172.21.0.3", "es", RecordType::A));
        assert!(r.local);
        assert_eq!(a_records(&msg), vec![ip("172.21.0.2")]);
        assert_eq!(msg.id(), 0x4242);
        assert_eq!(msg.message_type(), MessageType::Response);
        assert!(msg.authoritative());
        assert!(msg.recursion_desired());
        assert_eq!(msg.answers()[0].ttl(), LOCAL_TTL);
        assert_eq!(
            msg.queries()[0].name(),
            &Name::from_str("es.").expect("name")
        );
        // Short id, case-insensitive, absolute name.
        assert_eq!(
            resolve(&t, "dev", "172.21.0.3", "E5E5e5e5e5e5."),
            vec![ip("172.21.0.2")]
        );
        assert_eq!(
            resolve(&t, "dev", "172.21.0.3", "ES."),
            vec![ip("172.21.0.2")]
        );
        // A sandbox resolves itself.
        assert_eq!(
            resolve(&t, "dev", "172.21.0.3", "dev-client"),
            vec![ip("172.21.0.3")]
        );
    }

    #[test]
    fn shared_alias_returns_all_shuffled() {
        let t = world();
        let mut orders = HashSet::new();
        let mut rng = Rng::new(12345);
        let bytes = query_bytes("es", RecordType::A, None);
        for _ in 0..64 {
            let action = answer(
                &t,
                &Request {
                    network: "prod",
                    asker: ip("172.22.0.4"),
                    bytes: &bytes,
                    transport: UDP,
                },
                &mut rng,
            );
            let (_, msg) = reply(action);
            let addrs = a_records(&msg);
            let mut sorted = addrs.clone();
            sorted.sort();
            assert_eq!(sorted, vec![ip("172.22.0.2"), ip("172.22.0.3")]);
            orders.insert(addrs);
        }
        assert_eq!(orders.len(), 2, "both orders show up");
    }

    #[test]
    fn scope_is_the_askers_networks_in_connection_order() {
        let t = world();
        // From dev, `es` is dev's es; from prod, prod's two.
        assert_eq!(
            resolve(&t, "dev", "172.21.0.3", "es"),
            vec![ip("172.21.0.2")]
        );
        assert_eq!(resolve(&t, "prod", "172.22.0.4", "es").len(), 2);
        // `both` is on dev first: a bare `es` is dev's, on either gateway.
        assert_eq!(
            resolve(&t, "dev", "172.21.0.9", "es"),
            vec![ip("172.21.0.2")]
        );
        assert_eq!(
            resolve(&t, "prod", "172.22.0.9", "es"),
            vec![ip("172.21.0.2")]
        );
        // Qualified names pick the network.
        let mut prod_es = resolve(&t, "dev", "172.21.0.9", "es.prod");
        prod_es.sort();
        assert_eq!(prod_es, vec![ip("172.22.0.2"), ip("172.22.0.3")]);
        assert_eq!(
            resolve(&t, "dev", "172.21.0.9", "ES.Dev."),
            vec![ip("172.21.0.2")]
        );
        assert_eq!(
            resolve(&t, "dev", "172.21.0.9", "hello.prod"),
            vec![ip("172.22.0.4")]
        );
        // A prod-only name from a dev-only sandbox is not local: forwarded.
        assert!(matches!(
            ask(&t, "dev", "172.21.0.3", "hello", RecordType::A),
            Action::Forward(_)
        ));
        assert!(matches!(
            ask(&t, "dev", "172.21.0.3", "hello.prod", RecordType::A),
            Action::Forward(_)
        ));
        assert!(matches!(
            ask(&t, "dev", "172.21.0.3", "es.prod", RecordType::A),
            Action::Forward(_)
        ));
        // Aliases are per network: `search` exists on prod only.
        assert_eq!(
            resolve(&t, "prod", "172.22.0.4", "search"),
            vec![ip("172.22.0.3")]
        );
        assert!(matches!(
            ask(&t, "dev", "172.21.0.9", "search.dev", RecordType::A),
            Action::Forward(_)
        ));
    }

    #[test]
    fn unknown_asker_gets_its_networks_names() {
        let t = world();
        // An address the table does not know yet (attached a moment ago).
        assert_eq!(
            resolve(&t, "dev", "172.21.0.77", "es"),
            vec![ip("172.21.0.2")]
        );
    }

    #[test]
    fn bridge_has_no_names_but_forwards() {
        let t = world();
        assert!(matches!(
            ask(&t, "bridge", "172.20.0.2", "bridged2", RecordType::A),
            Action::Forward(_)
        ));
        assert!(matches!(
            ask(&t, "bridge", "172.20.0.2", "es", RecordType::A),
            Action::Forward(_)
        ));
        assert!(matches!(
            ask(
                &t,
                "bridge",
                "172.20.0.2",
                "3.0.20.172.in-addr.arpa",
                RecordType::PTR
            ),
            Action::Forward(_)
        ));
        match ask(&t, "bridge", "172.20.0.2", "example.com", RecordType::A) {
            Action::Forward(f) => {
                assert_eq!(f.limit, MIN_UDP_ANSWER);
                assert_eq!(f.bytes, query_bytes("example.com", RecordType::A, None));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn internal_networks_never_forward() {
        let t = world();
        assert_eq!(
            resolve(&t, "secret", "172.23.0.3", "vault"),
            vec![ip("172.23.0.2")]
        );
        for name in ["example.com", "es", "es.dev", "1.0.0.127.in-addr.arpa"] {
            let (r, msg) = reply(ask(&t, "secret", "172.23.0.3", name, RecordType::A));
            assert_eq!(msg.response_code(), ResponseCode::NXDomain, "{name}");
            assert!(r.local);
            assert!(msg.answers().is_empty());
        }
    }

    /// Docker forwards for a container on an internal and an external
    /// network, whichever was listed first and whichever gateway is asked.
    #[test]
    fn internal_first_sandbox_with_an_external_network_forwards() {
        let t = NameTable::build(
            &[net("secret", 3, true), net("dev", 1, false)],
            &[
                sandbox(
                    "app",
                    "c1c1c1c1c1c1",
                    &[("secret", "172.23.0.5", &[]), ("dev", "172.21.0.5", &[])],
                ),
                sandbox("vault", "0a0a0a0a0a0a", &[("secret", "172.23.0.2", &[])]),
            ],
        );
        for (network, asker) in [("secret", "172.23.0.5"), ("dev", "172.21.0.5")] {
            assert!(
                matches!(
                    ask(&t, network, asker, "example.com", RecordType::A),
                    Action::Forward(_)
                ),
                "{network}"
            );
        }
        // Its neighbour only on the internal network still gets NXDOMAIN,
        // and so does an address the table does not know yet.
        for asker in ["172.23.0.2", "172.23.0.99"] {
            let (_, msg) = reply(ask(&t, "secret", asker, "example.com", RecordType::A));
            assert_eq!(msg.response_code(), ResponseCode::NXDomain, "{asker}");
        }
    }

    #[test]
    fn unknown_network_is_servfail_not_forwarded() {
        let t = NameTable::default();
        let (r, msg) = reply(ask(&t, "dev", "172.21.0.3", "example.com", RecordType::A));
        assert_eq!(msg.response_code(), ResponseCode::ServFail);
        assert!(!r.local);
    }

    #[test]
    fn other_types_for_local_names_are_empty_noerror() {
        let t = world();
        for rtype in [
            RecordType::AAAA,
            RecordType::MX,
            RecordType::TXT,
            RecordType::SRV,
            RecordType::PTR,
        ] {
            let (r, msg) = reply(ask(&t, "dev", "172.21.0.3", "es", rtype));
            assert_eq!(msg.response_code(), ResponseCode::NoError, "{rtype}");
            assert!(msg.answers().is_empty(), "{rtype}");
            assert!(r.local);
        }
        let (_, msg) = reply(ask(&t, "dev", "172.21.0.3", "es", RecordType::ANY));
        assert_eq!(a_records(&msg), vec![ip("172.21.0.2")]);
    }

    #[test]
    fn ptr_answers_name_dot_network() {
        let t = world();
        let (r, msg) = reply(ask(
            &t,
            "prod",
            "172.22.0.2",
            "4.0.22.172.in-addr.arpa",
            RecordType::PTR,
        ));
        assert!(r.local);
        let targets: Vec<String> = msg
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::PTR(p) => Some(p.0.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(targets, vec!["hello.prod.".to_string()]);
        assert_eq!(msg.answers()[0].ttl(), LOCAL_TTL);
        // Upper case and a trailing dot.
        let (_, msg) = reply(ask(
            &t,
            "prod",
            "172.22.0.2",
            "4.0.22.172.IN-ADDR.ARPA.",
            RecordType::PTR,
        ));
        assert_eq!(msg.answers().len(), 1);
        // A sandbox on two networks is named per network.
        let (_, msg) = reply(ask(
            &t,
            "dev",
            "172.21.0.9",
            "9.0.21.172.in-addr.arpa",
            RecordType::PTR,
        ));
        assert!(matches!(msg.answers()[0].data(), RData::PTR(p) if p.0.to_string() == "both.dev."));
        let (_, msg) = reply(ask(
            &t,
            "dev",
            "172.21.0.9",
            "9.0.22.172.in-addr.arpa",
            RecordType::PTR,
        ));
        assert!(
            matches!(msg.answers()[0].data(), RData::PTR(p) if p.0.to_string() == "both.prod.")
        );
        // Not an address on the asker's networks: forwarded.
        assert!(matches!(
            ask(
                &t,
                "dev",
                "172.21.0.3",
                "4.0.22.172.in-addr.arpa",
                RecordType::PTR
            ),
            Action::Forward(_)
        ));
        // Not a strict reverse name.
        for name in [
            "04.0.22.172.in-addr.arpa",
            "0.22.172.in-addr.arpa",
            "1.4.0.22.172.in-addr.arpa",
            "256.0.22.172.in-addr.arpa",
        ] {
            assert!(
                matches!(
                    ask(&t, "prod", "172.22.0.2", name, RecordType::PTR),
                    Action::Forward(_)
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn udp_answers_are_truncated_to_the_clients_size() {
        let mut sandboxes = Vec::new();
        for i in 0..200u32 {
            let addr = format!("172.22.{}.{}", i / 250, i % 250 + 2);
            sandboxes.push(SandboxInfo {
                name: format!("web-{i}"),
                short_id: format!("{i:012x}"),
                endpoints: vec![EndpointInfo {
                    network: "prod".into(),
                    ip: ip(&addr),
                    aliases: vec!["web".into()],
                }],
            });
        }
        let t = NameTable::build(&[net("prod", 2, false)], &sandboxes);
        let asker = "172.22.0.2";

        // Without EDNS: 512 bytes, TC set, whole records only.
        let q = query_bytes("web", RecordType::A, None);
        let (r, msg) = reply(ask_bytes(&t, "prod", asker, &q, UDP));
        assert!(r.bytes.len() <= 512, "{}", r.bytes.len());
        assert!(r.truncated && msg.truncated());
        assert!(!msg.answers().is_empty() && msg.answers().len() < 200);

        // EDNS 1232: up to 1232 bytes, still truncated; the OPT is echoed.
        let q = query_bytes("web", RecordType::A, Some(1232));
        let (r, msg) = reply(ask_bytes(&t, "prod", asker, &q, UDP));
        assert!(r.bytes.len() <= 1232 && r.bytes.len() > 512);
        assert!(msg.truncated());
        assert!(msg.extensions().is_some());

        // EDNS 4096 is bounded by the server's own bound.
        let q = query_bytes("web", RecordType::A, Some(4096));
        let (r, _) = reply(ask_bytes(
            &t,
            "prod",
            asker,
            &q,
            Transport::Udp { max: 1000 },
        ));
        assert!(r.bytes.len() <= 1000);

        // EDNS below 512 means 512.
        let q = query_bytes("web", RecordType::A, Some(100));
        let (r, _) = reply(ask_bytes(&t, "prod", asker, &q, UDP));
        assert!(r.bytes.len() > 100 && r.bytes.len() <= 512);

        // TCP: everything.
        let q = query_bytes("web", RecordType::A, None);
        let (r, msg) = reply(ask_bytes(&t, "prod", asker, &q, Transport::Tcp));
        assert!(!r.truncated && !msg.truncated());
        assert_eq!(msg.answers().len(), 200);
    }

    #[test]
    fn fit_forwarded_truncates_only_when_needed() {
        let t = world();
        let Action::Forward(f) = ask(&t, "dev", "172.21.0.3", "example.com", RecordType::A) else {
            panic!("forward")
        };
        let mut upstream = Message::new();
        upstream
            .set_id(0x4242)
            .set_message_type(MessageType::Response);
        upstream.add_query(f.query.queries()[0].clone());
        let name = Name::from_str("example.com").expect("name");
        for i in 0..100u8 {
            upstream.add_answer(Record::from_rdata(
                name.clone(),
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, i))),
            ));
        }
        let bytes = upstream.to_vec().expect("encode");
        let (out, rcode, truncated) = fit_forwarded(&f.query, bytes.clone(), 4096).expect("fits");
        assert_eq!(
            (out, rcode, truncated),
            (bytes.clone(), ResponseCode::NoError, false)
        );
        let (out, _, truncated) = fit_forwarded(&f.query, bytes, 512).expect("cut");
        assert!(truncated && out.len() <= 512);
        let msg = Message::from_vec(&out).expect("parse");
        assert!(msg.truncated());
        assert_eq!(msg.id(), 0x4242);
        assert_eq!(msg.queries().len(), 1);
        assert!(fit_forwarded(&f.query, vec![1, 2, 3], 512).is_none());

        let servfail = error_answer(&f.query, ResponseCode::ServFail, f.limit);
        let msg = Message::from_vec(&servfail).expect("parse");
        assert_eq!(msg.response_code(), ResponseCode::ServFail);
        assert_eq!(msg.id(), 0x4242);
    }

    fn rcode_of(action: Action) -> ResponseCode {
        let (r, msg) = reply(action);
        assert!(r.malformed || msg.response_code() == ResponseCode::ServFail);
        msg.response_code()
    }

    /// A 12-byte header: id 0x1234, RD, the given counts.
    fn header(flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
        let mut h = Vec::new();
        for word in [0x1234, flags, qd, an, ns, ar] {
            h.extend_from_slice(&u16::to_be_bytes(word));
        }
        h
    }

    #[test]
    fn hostile_queries_are_answered_or_dropped() {
        let t = world();
        let ask = |bytes: &[u8]| ask_bytes(&t, "dev", "172.21.0.3", bytes, UDP);
        // Too short to have an id.
        assert!(matches!(ask(&[]), Action::Drop(DropReason::TooShort)));
        assert!(matches!(
            ask(&[0x12, 0x34, 1]),
            Action::Drop(DropReason::TooShort)
        ));
        // A response.
        assert!(matches!(
            ask(&header(0x8100, 1, 0, 0, 0)),
            Action::Drop(DropReason::NotAQuery)
        ));
        // QDCOUNT 0, 2, huge.
        assert_eq!(
            rcode_of(ask(&header(0x0100, 0, 0, 0, 0))),
            ResponseCode::FormErr
        );
        let mut two = query_bytes("es", RecordType::A, None);
        two[5] = 2;
        assert_eq!(rcode_of(ask(&two)), ResponseCode::FormErr);
        assert_eq!(
            rcode_of(ask(&header(0x0100, 0xffff, 0, 0, 0))),
            ResponseCode::FormErr
        );
        // Huge record counts.
        let mut q = query_bytes("es", RecordType::A, None);
        q[6..12].copy_from_slice(&[0xff; 6]);
        assert_eq!(rcode_of(ask(&q)), ResponseCode::FormErr);
        // Another opcode.
        assert_eq!(
            rcode_of(ask(&header(0x2900, 1, 0, 0, 0))),
            ResponseCode::NotImp
        );
        // Truncated question.
        let q = query_bytes("es.example.com", RecordType::A, None);
        for cut in 13..q.len() {
            assert_eq!(
                rcode_of(ask(&q[..cut])),
                ResponseCode::FormErr,
                "cut at {cut}"
            );
        }
        // A compression pointer to itself, and two pointing at each other.
        let mut q = header(0x0100, 1, 0, 0, 0);
        q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(rcode_of(ask(&q)), ResponseCode::FormErr);
        let mut q = header(0x0100, 1, 0, 0, 0);
        q.extend_from_slice(&[0xc0, 14, 0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(rcode_of(ask(&q)), ResponseCode::FormErr);
        // A label of 64 bytes.
        let mut q = header(0x0100, 1, 0, 0, 0);
        q.push(64);
        q.extend_from_slice(&[b'a'; 64]);
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(rcode_of(ask(&q)), ResponseCode::FormErr);
        // A name over 255 bytes.
        let mut q = header(0x0100, 1, 0, 0, 0);
        for _ in 0..5 {
            q.push(63);
            q.extend_from_slice(&[b'a'; 63]);
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(rcode_of(ask(&q)), ResponseCode::FormErr);
        // Reserved label types.
        let mut q = header(0x0100, 1, 0, 0, 0);
        q.extend_from_slice(&[0x80, 0, 0, 1, 0, 1]);
        assert_eq!(rcode_of(ask(&q)), ResponseCode::FormErr);
        // Oversize.
        let mut q = query_bytes("es", RecordType::A, None);
        q.resize(MAX_QUERY + 1, 0);
        assert_eq!(rcode_of(ask(&q)), ResponseCode::FormErr);
        // Trailing garbage after a good query is tolerated (as hickory does).
        let mut q = query_bytes("es", RecordType::A, None);
        q.extend_from_slice(b"junk");
        let (_, msg) = reply(ask(&q));
        assert_eq!(a_records(&msg), vec![ip("172.21.0.2")]);
        // Labels with bytes no name has: never local, forwarded.
        let mut q = header(0x0100, 1, 0, 0, 0);
        q.extend_from_slice(&[2, b'e', 0xff, 0, 0, 1, 0, 1]);
        assert!(matches!(ask(&q), Action::Forward(_)));
        // Class CH is not local.
        let mut q = query_bytes("es", RecordType::A, None);
        let n = q.len();
        q[n - 1] = 3;
        assert!(matches!(ask(&q), Action::Forward(_)));
    }

    #[test]
    fn deep_pointer_chain_within_bounds() {
        // An additional record whose owner name is a chain of pointers, each
        // to the one before: bounded by MAX_QUERY, parsed without trouble.
        let t = world();
        let mut q = query_bytes("es", RecordType::A, None);
        q[11] = 1; // ARCOUNT 1
        let first = q.len();
        q.extend_from_slice(&[0]); // root name at `first`
        let mut prev = first;
        while q.len() + 2 + 10 < MAX_QUERY {
            let here = q.len();
            q.extend_from_slice(&[0xc0 | (prev >> 8) as u8, prev as u8]);
            prev = here;
        }
        let _ = ask_bytes(&t, "dev", "172.21.0.3", &q, UDP);
    }

    #[test]
    fn random_bytes_never_panic() {
        let t = world();
        let mut rng = Rng::new(99);
        let seed = query_bytes("es.prod", RecordType::A, Some(1232));
        for round in 0..20_000 {
            let mut bytes = if round % 2 == 0 {
                let len = (rng.next_u64() % 80) as usize;
                (0..len).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>()
            } else {
                seed.clone()
            };
            // Flip a few bytes of a good query.
            for _ in 0..(rng.next_u64() % 4) {
                if bytes.is_empty() {
                    break;
                }
                let i = (rng.next_u64() % bytes.len() as u64) as usize;
                bytes[i] = rng.next_u64() as u8;
            }
            if round % 3 == 0 && bytes.len() > 2 {
                bytes[2] &= 0x7f; // a query
            }
            let transport = if round % 5 == 0 { Transport::Tcp } else { UDP };
            let _ = ask_bytes(&t, "prod", "172.22.0.9", &bytes, transport);
        }
    }

    #[test]
    fn reverse_names_parse_strictly() {
        assert_eq!(parse_reverse("4.3.2.1.in-addr.arpa"), Some(ip("1.2.3.4")));
        assert_eq!(parse_reverse("0.0.0.0.in-addr.arpa"), Some(ip("0.0.0.0")));
        assert_eq!(
            parse_reverse("255.255.255.255.in-addr.arpa"),
            Some(ip("255.255.255.255"))
        );
        for bad in [
            "4.3.2.in-addr.arpa",
            "x.3.2.1.in-addr.arpa",
            "+4.3.2.1.in-addr.arpa",
            "4.3.2.1",
            ".3.2.1.in-addr.arpa",
            "1000.3.2.1.in-addr.arpa",
        ] {
            assert_eq!(parse_reverse(bad), None, "{bad}");
        }
    }

    #[test]
    fn rng_shuffles_everything() {
        let mut rng = Rng::new(0);
        let mut v: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<u32>>());
        assert_ne!(v, sorted);
    }
}
