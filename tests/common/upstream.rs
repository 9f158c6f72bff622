//! A DNS server on the host's loopback for tests to give the daemon as
//! its upstream (`--dns-upstream`): each test says what it answers, and
//! it records every name it was asked.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

/// What the upstream answers to one question.
pub enum Reply {
    /// NOERROR with this A record.
    A(Ipv4Addr),
    /// NOERROR, no records.
    NoData,
    NxDomain,
    /// No answer at all, ever (a name whose servers are unreachable).
    Silent,
}

/// Decides the reply from the question's name (lower case, absolute) and
/// type.
pub type Answers = fn(&str, RecordType) -> Reply;

pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    silent: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    pub fn start(answers: Answers) -> Upstream {
        Upstream::start_at("127.0.0.1:0", answers).unwrap()
    }

    /// One at `addr` (e.g. a loopback address's port 53, as `run --dns`
    /// names a resolver); `None` if that cannot be bound.
    pub fn start_at(addr: &str, answers: Answers) -> Option<Upstream> {
        let socket = UdpSocket::bind(addr).ok()?;
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let silent = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, silent2, stop2) = (seen.clone(), silent.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop2.load(Ordering::SeqCst) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let Some(q) = query.queries().first().cloned() else {
                    continue;
                };
                let name = q.name().to_lowercase().to_ascii();
                seen2.lock().unwrap().push(name.clone());
                if silent2.load(Ordering::SeqCst) {
                    continue;
                }
                let mut answer = Message::new();
                answer
                    .set_id(query.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_desired(query.recursion_desired())
                    .set_recursion_available(true);
                answer.add_query(q.clone());
                match answers(&name, q.query_type()) {
                    Reply::Silent => continue,
                    Reply::A(ip) => {
                        answer.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::A(A(ip)),
                        ));
                    }
                    Reply::NoData => {}
                    Reply::NxDomain => {
                        answer.set_response_code(ResponseCode::NXDomain);
                    }
                }
                let _ = socket.send_to(&answer.to_vec().unwrap(), from);
            }
        });
        Some(Upstream {
            addr,
            seen,
            silent,
            stop,
            thread: Some(thread),
        })
    }

    /// The `--dns-upstream` argument.
    pub fn arg(&self) -> String {
        self.addr.to_string()
    }

    /// Names asked so far (lower case, absolute).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    pub fn asked(&self, name: &str) -> bool {
        self.seen().iter().any(|n| n == name)
    }

    /// Keep receiving but never answer.
    pub fn go_silent(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }

    /// Close the socket: queries are refused by the kernel.
    pub fn shut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shut();
    }
}
