//! warren's VXLAN against the kernel's (issue 19's wire-format check): a
//! kernel `vxlan` device in one namespace the test makes, warren's codec
//! (`warren::switch::vxlan`) on a UDP socket in another, a veth between.
//!
//! ```text
//!  ns "k": vx0 (kernel VXLAN, VNI 4097, 10.0.1.9)  10.248.0.1 ── veth ── 10.248.0.2  ns "w": UDP :4789, warren's codec
//! ```
//!
//! `ping 10.0.1.2` in "k" makes the kernel ARP for it over VXLAN; warren
//! decapsulates the request, admits it by its peer table, and answers with
//! an ARP reply it encapsulates; the kernel takes it (its neighbour entry
//! gets our MAC), sends the echo request, which warren decapsulates and
//! admits too, and takes warren's encapsulated echo reply: ping succeeds.
//! Then a reply from an address that is not the peer's is refused by the
//! table. Needs root (namespaces, veths, a vxlan device); nothing leaves
//! the two namespaces.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::world::root;
use warren::switch::vxlan::{self, Peer, PeerTable, Refused};

const VNI: u32 = 4097;
const KERNEL_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x00, 0x01, 0x09];
const OUR_MAC: [u8; 6] = [0x02, 0x42, 0x0a, 0x00, 0x01, 0x02];
const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 9);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);

struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut c = vec!["ip", "netns", "exec", ns];
    c.extend_from_slice(args);
    root(&c)
}

/// A UDP socket bound in network namespace `ns` (made from a thread that
/// entered it; the socket stays there).
fn socket_in(ns: &str, addr: &str) -> UdpSocket {
    let path = format!("/run/netns/{ns}");
    let addr = addr.to_string();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        UdpSocket::bind(addr).unwrap()
    })
    .join()
    .unwrap()
}

/// An ARP reply from us to the kernel's device.
fn arp_reply() -> Vec<u8> {
    let mut f = vec![0u8; 42];
    f[..6].copy_from_slice(&KERNEL_MAC);
    f[6..12].copy_from_slice(&OUR_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    let a = &mut f[14..];
    a[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    a[8..14].copy_from_slice(&OUR_MAC);
    a[14..18].copy_from_slice(&OUR_IP.octets());
    a[18..24].copy_from_slice(&KERNEL_MAC);
    a[24..28].copy_from_slice(&KERNEL_IP.octets());
    f
}

/// The echo reply to an echo request frame (addresses and type swapped,
/// checksums redone).
fn echo_reply(request: &[u8]) -> Vec<u8> {
    let mut f = request.to_vec();
    f[..6].copy_from_slice(&KERNEL_MAC);
    f[6..12].copy_from_slice(&OUR_MAC);
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let (src, dst) = (f[26..30].to_vec(), f[30..34].to_vec());
    f[26..30].copy_from_slice(&dst);
    f[30..34].copy_from_slice(&src);
    f[24..26].copy_from_slice(&[0, 0]);
    let sum = checksum(&f[14..14 + ihl]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    let icmp = 14 + ihl;
    f[icmp] = 0;
    f[icmp + 2..icmp + 4].copy_from_slice(&[0, 0]);
    let sum = checksum(&f[icmp..]);
    f[icmp + 2..icmp + 4].copy_from_slice(&sum.to_be_bytes());
    f
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The next datagram whose inner frame has `ethertype` (anything else the
/// kernel sends meanwhile is passed over), within the socket's timeout.
fn next_of(sock: &UdpSocket, buf: &mut [u8], ethertype: [u8; 2]) -> (usize, SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let (n, from) = sock
            .recv_from(buf)
            .unwrap_or_else(|e| panic!("nothing of type {ethertype:02x?} came: {e}"));
        if n >= vxlan::HEADER_LEN + 14
            && buf[vxlan::HEADER_LEN + 12..vxlan::HEADER_LEN + 14] == ethertype
        {
            return (n, from);
        }
    }
    panic!("nothing of type {ethertype:02x?} came in 5 s");
}

#[test]
fn a_kernel_vxlan_device_and_warren_exchange_frames() {
    if common::test_ids().is_none() {
        return common::skip("needs root to make the namespaces and the vxlan device");
    }
    let id = std::process::id() % 100_000;
    let (k, w) = (format!("warren-vxk-{id}"), format!("warren-vxw-{id}"));
    let _ns = Namespaces(vec![k.clone(), w.clone()]);
    root(&["ip", "netns", "add", &k]);
    root(&["ip", "netns", "add", &w]);
    let (a, b) = (format!("vxa{id}"), format!("vxb{id}"));
    root(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
    root(&["ip", "link", "set", &a, "netns", &k]);
    root(&["ip", "link", "set", &b, "netns", &w]);
    in_ns(&k, &["ip", "addr", "add", "10.248.0.1/24", "dev", &a]);
    in_ns(&k, &["ip", "link", "set", &a, "up"]);
    in_ns(&w, &["ip", "addr", "add", "10.248.0.2/24", "dev", &b]);
    in_ns(&w, &["ip", "link", "set", &b, "up"]);
    let vni = VNI.to_string();
    in_ns(
        &k,
        &[
            "ip",
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            &vni,
            "dstport",
            "4789",
            "local",
            "10.248.0.1",
            "remote",
            "10.248.0.2",
            "dev",
            &a,
            "nolearning",
        ],
    );
    in_ns(
        &k,
        &["ip", "link", "set", "vx0", "address", "02:42:0a:00:01:09"],
    );
    in_ns(&k, &["ip", "addr", "add", "10.0.1.9/24", "dev", "vx0"]);
    // No IPv6 chatter (MLD, router solicitations) on the device.
    in_ns(&k, &["sysctl", "-qw", "net.ipv6.conf.vx0.disable_ipv6=1"]);
    in_ns(&k, &["ip", "link", "set", "vx0", "up"]);

    let sock = socket_in(&w, "10.248.0.2:4789");
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let kernel_vtep = SocketAddr::from(([10, 248, 0, 1], vxlan::DEFAULT_PORT));
    let mut table = PeerTable::new(VNI);
    table
        .insert(Peer {
            vtep: kernel_vtep,
            mac: KERNEL_MAC,
            ipv4: KERNEL_IP,
        })
        .unwrap();

    // The ping runs while warren answers it.
    let pinger = Command::new("ip")
        .args([
            "netns", "exec", &k, "ping", "-c", "1", "-W", "5", "10.0.1.2",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let mut buf = [0u8; 2048];
    let mut out = [0u8; 2048];
    // 1. The kernel's ARP request, through warren's decapsulation.
    let (n, from) = next_of(&sock, &mut buf, [0x08, 0x06]);
    assert_eq!(from.ip(), kernel_vtep.ip(), "{from}");
    let (got_vni, inner) = vxlan::decapsulate(&buf[..n]).unwrap();
    assert_eq!(got_vni, VNI);
    assert_eq!(&inner[12..14], &[0x08, 0x06], "not ARP: {inner:02x?}");
    assert_eq!(&inner[6..12], &KERNEL_MAC);
    assert_eq!(&inner[38..42], &OUR_IP.octets(), "ARP for another address");
    assert_eq!(table.admit(from, got_vni, inner), Ok(()));
    // The same request from another sender, or with another VNI: refused.
    let other = SocketAddr::from(([10, 248, 0, 7], 4789));
    assert_eq!(
        table.admit(other, got_vni, inner),
        Err(Refused::UnknownSender)
    );
    assert_eq!(table.admit(from, VNI + 1, inner), Err(Refused::WrongVni));

    // 2. warren's ARP reply, encapsulated; the kernel takes it.
    let len = vxlan::encapsulate(VNI, &arp_reply(), &mut out).unwrap();
    sock.send_to(&out[..len], kernel_vtep).unwrap();

    // 3. The echo request that follows.
    let (n, from) = next_of(&sock, &mut buf, [0x08, 0x00]);
    let (got_vni, inner) = vxlan::decapsulate(&buf[..n]).unwrap();
    assert_eq!(got_vni, VNI);
    assert_eq!(&inner[12..14], &[0x08, 0x00], "not IPv4: {inner:02x?}");
    assert_eq!(&inner[..6], &OUR_MAC, "the kernel did not learn our MAC");
    assert_eq!(inner[14 + 9], 1, "not ICMP");
    assert_eq!(table.admit(from, got_vni, inner), Ok(()));

    // 4. warren's echo reply; the ping succeeds.
    let reply = echo_reply(inner);
    let len = vxlan::encapsulate(VNI, &reply, &mut out).unwrap();
    sock.send_to(&out[..len], kernel_vtep).unwrap();
    let done = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "ping through the kernel's VXLAN failed:\n{text}"
    );
    assert!(text.contains("1 received"), "{text}");
    let neigh = in_ns(&k, &["ip", "neigh", "show", "10.0.1.2", "dev", "vx0"]);
    assert!(neigh.contains("02:42:0a:00:01:02"), "{neigh}");
}
