//! The DNS side of `signpost dns`: a hickory-server request handler over the [`Table`].
//!
//! hickory does the wire format, the UDP and TCP loops and truncation (a UDP answer larger
//! than the client's buffer, 512 bytes without EDNS, is cut at a record boundary with the TC
//! bit set, so the client asks again over TCP). This module only decides what to answer:
//! authoritative answers from the table for the cluster domain, the upstream's answer (or
//! REFUSED) for everything else.

use std::iter;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use signpost_runtime::Synced;

use super::forward;
use super::metrics::DnsMetrics;
use super::rotate::rotate;
use super::table::{Answer, Data, QueryType, Status, Table};

/// How long one forwarded query may take in all (UDP and a TCP retry) before the client gets
/// SERVFAIL (clients retry after about 5 s, so answering earlier lets them).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers every query hickory hands over.
pub struct Handler {
    table: Arc<RwLock<Table>>,
    upstream: Option<forward::Forwarder>,
    metrics: DnsMetrics,
    max_udp_size: u16,
    started: Option<(Synced, Arc<AtomicBool>)>,
    /// Counts answers from the table: how far each one rotates its addresses.
    rotation: AtomicUsize,
}

impl Handler {
    /// A handler answering from `table`, forwarding names outside the cluster domain to
    /// `upstream` when there is one (at most [`forward::DEFAULT_MAX_IN_FLIGHT`] queries at
    /// once; see [`Handler::set_max_upstream_in_flight`]).
    pub fn new(
        table: Arc<RwLock<Table>>,
        upstream: Option<SocketAddr>,
        metrics: DnsMetrics,
    ) -> Self {
        Self {
            table,
            upstream: upstream.map(|upstream| {
                forward::Forwarder::new(upstream, forward::DEFAULT_MAX_IN_FLIGHT, UPSTREAM_TIMEOUT)
            }),
            metrics,
            max_udp_size: super::DEFAULT_MAX_UDP_SIZE,
            started: None,
            rotation: AtomicUsize::new(0),
        }
    }

    /// Answers names of the zone only once `synced` says the first full list of DNSRecords is
    /// in, or `timed_out` is set; SERVFAIL before. Until the list is in an NXDOMAIN could be
    /// wrong, and resolvers cache NXDOMAIN (for the SOA minimum) but not SERVFAIL, so they
    /// ask again. Without this call the handler answers from the start.
    pub fn set_startup(&mut self, synced: Synced, timed_out: Arc<AtomicBool>) {
        self.started = Some((synced, timed_out));
    }

    /// Whether names of the zone are answered from the table yet.
    pub fn is_serving(&self) -> bool {
        self.started.as_ref().is_none_or(|(synced, timed_out)| {
            synced.is_synced() || timed_out.load(Ordering::Acquire)
        })
    }

    /// Lets at most `max` forwarded queries wait on the upstream at once; the ones beyond get
    /// SERVFAIL at once instead of a socket each (see [`forward`]).
    pub fn set_max_upstream_in_flight(&mut self, max: usize) {
        if let Some(forwarder) = &mut self.upstream {
            *forwarder = forward::Forwarder::new(forwarder.upstream(), max, UPSTREAM_TIMEOUT);
        }
    }

    /// Caps UDP answers at `bytes` (at least 512) whatever buffer size the client advertises:
    /// a larger answer is truncated with the TC bit and the client retries over TCP, so a
    /// small spoofed query cannot be turned into a large answer at someone else.
    pub fn set_max_udp_size(&mut self, bytes: u16) {
        self.max_udp_size = bytes.max(512);
    }

    async fn respond<R: ResponseHandler>(&self, request: &Request, handle: R) -> ResponseInfo {
        // EDNS: hickory truncates UDP answers to the response's buffer size: the client's (at
        // least 512) but never more than ours, so an advertised 65,535 cannot amplify.
        let response_edns = request.edns.as_ref().map(|edns| {
            let mut ours = Edns::new();
            ours.set_max_payload(edns.max_payload().clamp(512, self.max_udp_size));
            ours.set_version(0);
            ours
        });
        let edns = response_edns.as_ref();
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return send_error(request, edns, ResponseCode::BADVERS, handle).await;
        }
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            return send_error(request, edns, ResponseCode::NotImp, handle).await;
        }
        let Ok(info) = request.request_info() else {
            return send_error(request, edns, ResponseCode::FormErr, handle).await;
        };
        let query = info.query;
        let qname: Name = query.original().name().clone();
        let key = qname.to_ascii().to_ascii_lowercase();
        let ours = self.read_table().authoritative(&key);
        if !ours {
            return match &self.upstream {
                Some(forwarder) => self.forward(request, edns, forwarder, handle).await,
                None => send_error(request, edns, ResponseCode::Refused, handle).await,
            };
        }
        if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) {
            return send_error(request, edns, ResponseCode::Refused, handle).await;
        }
        if !self.is_serving() {
            return send_error(request, edns, ResponseCode::ServFail, handle).await;
        }
        let qtype = query_type(query.query_type());
        self.answer(request, edns, (&key, &qname, qtype), handle)
            .await
    }

    /// The authoritative answer to a query for `key` (the lowercase `qname`) of `qtype` in the
    /// zones, from the table: answers rotated per query, additionals, and the SOA on negative
    /// answers.
    async fn answer<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        (key, qname, qtype): (&str, &Name, QueryType),
        handle: R,
    ) -> ResponseInfo {
        let (mut lookup, soa) = {
            let table = self.read_table();
            (table.lookup(key, qtype), table.soa_for(key))
        };
        rotate(
            &mut lookup.answers,
            self.rotation.fetch_add(1, Ordering::Relaxed),
        );
        let folded = key.strip_suffix('.').unwrap_or(key);
        let records = |answers: &[Answer]| -> Vec<Record> {
            answers
                .iter()
                .filter_map(|a| to_record(a, folded, qname))
                .collect()
        };
        let answers = records(&lookup.answers);
        let additionals = records(&lookup.additionals);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        // Recursion is available when names outside the zones are forwarded: without the flag,
        // stub resolvers (nslookup, dig) warn on every answer, and some refuse to use it.
        metadata.recursion_available = self.upstream.is_some();
        metadata.response_code = match lookup.status {
            Status::NxDomain => ResponseCode::NXDomain,
            _ => ResponseCode::NoError,
        };
        // Negative answers (NXDOMAIN, and NODATA: the name exists without that type) carry the
        // SOA, which tells resolvers how long to cache them (RFC 2308).
        let negative = lookup.status == Status::NxDomain || answers.is_empty();
        let authorities: Vec<Record> = if negative {
            to_record(&soa, folded, qname).into_iter().collect()
        } else {
            Vec::new()
        };
        let response = MessageResponseBuilder::new(&request.queries, edns).build(
            metadata,
            answers.iter(),
            authorities.iter(),
            iter::empty(),
            additionals.iter(),
        );
        send(request, response, handle).await
    }

    /// Passes the query to the upstream server and its answer back, sections as they came.
    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        forwarder: &forward::Forwarder,
        handle: R,
    ) -> ResponseInfo {
        let reply: Message = match forwarder.exchange(request.as_slice()).await {
            Ok(reply) => {
                self.metrics.forwarded("ok");
                reply
            }
            Err(error) => {
                self.metrics.forwarded(error.kind());
                tracing::debug!(upstream = %forwarder.upstream(), %error, "forwarding failed");
                return send_error(request, edns, ResponseCode::ServFail, handle).await;
            }
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = reply.metadata.response_code;
        metadata.recursion_available = reply.metadata.recursion_available;
        metadata.authentic_data = reply.metadata.authentic_data;
        metadata.truncation = reply.metadata.truncation;
        let response = MessageResponseBuilder::new(&request.queries, edns).build(
            metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            iter::empty(),
            reply.additionals.iter(),
        );
        send(request, response, handle).await
    }

    fn read_table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let qtype = request
            .queries
            .queries()
            .first()
            .map(|q| type_label(q.query_type()))
            .unwrap_or("other");
        let protocol = if matches!(request.protocol(), Protocol::Udp) {
            "udp"
        } else {
            "tcp"
        };
        let info = self.respond(request, response_handle).await;
        self.metrics.answered(
            qtype,
            rcode_label(info.response_code),
            protocol,
            started.elapsed(),
        );
        info
    }
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    edns: Option<&Edns>,
    code: ResponseCode,
    handle: R,
) -> ResponseInfo {
    let response =
        MessageResponseBuilder::new(&request.queries, edns).error_msg(&request.metadata, code);
    send(request, response, handle).await
}

async fn send<'a, R: ResponseHandler>(
    request: &Request,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    mut handle: R,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(%error, "could not send a DNS response");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

/// The table's view of a query type.
pub fn query_type(rtype: RecordType) -> QueryType {
    match rtype {
        RecordType::A => QueryType::A,
        RecordType::AAAA => QueryType::Aaaa,
        RecordType::SRV => QueryType::Srv,
        RecordType::CNAME => QueryType::Cname,
        RecordType::SOA => QueryType::Soa,
        RecordType::TXT => QueryType::Txt,
        RecordType::PTR => QueryType::Ptr,
        RecordType::ANY => QueryType::Any,
        _ => QueryType::Other,
    }
}

/// The `type` label of the query metric: a fixed set, whatever clients send.
pub fn type_label(rtype: RecordType) -> &'static str {
    match rtype {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::SRV => "SRV",
        RecordType::CNAME => "CNAME",
        RecordType::SOA => "SOA",
        RecordType::NS => "NS",
        RecordType::PTR => "PTR",
        RecordType::TXT => "TXT",
        RecordType::MX => "MX",
        RecordType::ANY => "ANY",
        _ => "other",
    }
}

/// The `rcode` label of the query metric.
pub fn rcode_label(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::NotImp => "NOTIMP",
        _ => "other",
    }
}

/// A table answer as a resource record. Answers at the query's own name keep the client's
/// spelling of it (resolvers that randomise the case of queries, "0x20", check it).
fn to_record(answer: &Answer, query_key: &str, query_name: &Name) -> Option<Record> {
    let name = if answer.name == query_key {
        query_name.clone()
    } else {
        fqdn(&answer.name)?
    };
    let data = match &answer.data {
        Data::A(ip) => RData::A(A(*ip)),
        Data::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        Data::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, fqdn(target)?)),
        Data::Cname(target) => RData::CNAME(CNAME(fqdn(target)?)),
        Data::Txt(text) => RData::TXT(TXT::new(vec![text.clone()])),
        Data::Ptr(target) => RData::PTR(PTR(fqdn(target)?)),
        Data::Soa {
            mname,
            rname,
            serial,
            minimum,
        } => RData::SOA(SOA::new(
            fqdn(mname)?,
            fqdn(rname)?,
            *serial,
            7200,
            1800,
            86400,
            *minimum,
        )),
    };
    Some(Record::from_rdata(name, answer.ttl, data))
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{name}.")).ok()
}
