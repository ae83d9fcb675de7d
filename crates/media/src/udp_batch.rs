//! Batched UDP I/O for RTP: `recvmmsg(2)` reads up to [`BATCH`] datagrams in one system call,
//! each with the kernel's receive time (`SO_TIMESTAMPNS`, so a reader that comes once per
//! media tick still knows when every packet really arrived), and `sendmmsg(2)` sends a media
//! tick's packets in one. The SIP media threads do both for their calls' sockets; the WebRTC
//! endpoint reads its one socket with [`recv_waiting`] and sends each shard's packets, every
//! one to its own browser, with [`send_each`]. All of ringside's unsafe socket code is here.
//!
//! Only [`recv_waiting`] blocks (until a first datagram, or the socket's read timeout);
//! everything else uses `MSG_DONTWAIT`. A full send buffer is not an error (the packets are
//! dropped, as the network would); an empty socket reads as [`io::ErrorKind::WouldBlock`] so
//! an async caller can wait for readiness again.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams read per system call.
pub const BATCH: usize = 16;
/// Largest datagram kept (RTP for 20 ms of G.711 is 172 bytes; larger ones are truncated and
/// then fail to parse).
pub const MAX_DATAGRAM: usize = 1500;

/// Receive buffers, reused across calls (one set per media thread).
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    lens: [usize; BATCH],
    addrs: [Option<SocketAddr>; BATCH],
    /// Kernel receive times, nanoseconds since the Unix epoch (when the socket has
    /// [`enable_timestamps`]).
    stamps: [Option<u64>; BATCH],
    control: [[u64; CONTROL_WORDS]; BATCH],
}

/// Room for one `SCM_TIMESTAMPNS` control message (a cmsghdr and a timespec), 8-aligned.
const CONTROL_WORDS: usize = 8;

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![[0u8; MAX_DATAGRAM]; BATCH],
            lens: [0; BATCH],
            addrs: [None; BATCH],
            stamps: [None; BATCH],
            control: [[0; CONTROL_WORDS]; BATCH],
        }
    }
}

impl RecvBatch {
    /// The `i`th datagram of the last receive, where it came from and when it arrived.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr, Option<u64>)> {
        Some((
            &self.bufs[i][..self.lens[i]],
            self.addrs[i]?,
            self.stamps[i],
        ))
    }
}

/// Ask the kernel to stamp every datagram `socket` receives with its arrival time.
pub fn enable_timestamps(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: a valid fd, and a pointer to a live c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &on as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

thread_local! {
    static RECV: RefCell<RecvBatch> = RefCell::new(RecvBatch::default());
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in when the family is AF_INET.
            let a = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for AF_INET6.
            let a = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Read up to [`BATCH`] datagrams waiting on `socket` without blocking; call `each` for every
/// one, with its kernel receive time when the socket stamps them. Returns how many were read
/// (0 when none were waiting).
pub fn drain(
    socket: &impl AsRawFd,
    each: impl FnMut(&[u8], SocketAddr, Option<u64>),
) -> io::Result<usize> {
    drain_up_to(socket, BATCH, each)
}

/// As [`drain`], reading at most `max` datagrams.
pub fn drain_up_to(
    socket: &impl AsRawFd,
    max: usize,
    mut each: impl FnMut(&[u8], SocketAddr, Option<u64>),
) -> io::Result<usize> {
    RECV.with(|b| {
        let mut b = b.borrow_mut();
        let n = match recv_up_to(socket, &mut b, max) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            r => r?,
        };
        for i in 0..n {
            if let Some((d, from, at)) = b.get(i) {
                each(d, from, at);
            }
        }
        Ok(n)
    })
}

/// One `recvmmsg` into `b`; `WouldBlock` when nothing is waiting.
pub fn recv(socket: &impl AsRawFd, b: &mut RecvBatch) -> io::Result<usize> {
    recv_up_to(socket, b, BATCH)
}

/// One `recvmmsg` of at most `max` (≤ [`BATCH`]) datagrams: a media tick usually finds one
/// waiting, so only that many headers are prepared.
pub fn recv_up_to(socket: &impl AsRawFd, b: &mut RecvBatch, max: usize) -> io::Result<usize> {
    recv_with(socket, b, max, libc::MSG_DONTWAIT)
}

/// One `recvmmsg` that waits for a first datagram (as long as the socket's read timeout, then
/// `WouldBlock`) and takes what else is already waiting with it, up to [`BATCH`].
pub fn recv_waiting(socket: &impl AsRawFd, b: &mut RecvBatch) -> io::Result<usize> {
    recv_with(socket, b, BATCH, libc::MSG_WAITFORONE)
}

fn recv_with(
    socket: &impl AsRawFd,
    b: &mut RecvBatch,
    max: usize,
    flags: libc::c_int,
) -> io::Result<usize> {
    const NONE: MaybeUninit<libc::mmsghdr> = MaybeUninit::uninit();
    let max = max.clamp(1, BATCH);
    let mut iov: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    let mut names: [MaybeUninit<libc::sockaddr_storage>; BATCH] =
        [const { MaybeUninit::uninit() }; BATCH];
    let mut msgs: [MaybeUninit<libc::mmsghdr>; BATCH] = [NONE; BATCH];
    for i in 0..max {
        // SAFETY: an all-zero sockaddr_storage and mmsghdr are valid values.
        names[i].write(unsafe { std::mem::zeroed() });
        msgs[i].write(unsafe { std::mem::zeroed() });
    }
    // SAFETY: the first `max` entries were just initialised.
    let names: &mut [libc::sockaddr_storage] =
        unsafe { std::slice::from_raw_parts_mut(names.as_mut_ptr().cast(), max) };
    let msgs: &mut [libc::mmsghdr] =
        unsafe { std::slice::from_raw_parts_mut(msgs.as_mut_ptr().cast(), max) };
    for i in 0..max {
        iov[i].write(libc::iovec {
            iov_base: b.bufs[i].as_mut_ptr() as *mut libc::c_void,
            iov_len: MAX_DATAGRAM,
        });
        msgs[i].msg_hdr.msg_name = &mut names[i] as *mut _ as *mut libc::c_void;
        msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        msgs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = b.control[i].as_mut_ptr() as *mut libc::c_void;
        msgs[i].msg_hdr.msg_controllen = std::mem::size_of::<[u64; CONTROL_WORDS]>() as _;
    }
    // SAFETY: every pointer refers to a live local or to `b`'s buffers, sized as declared.
    let n = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            max as libc::c_uint,
            flags,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            // An ICMP error from an earlier send (port unreachable): not this read's fault.
            io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused => Ok(0),
            _ => Err(e),
        };
    }
    let n = n as usize;
    for i in 0..n {
        b.lens[i] = (msgs[i].msg_len as usize).min(MAX_DATAGRAM);
        b.addrs[i] = from_storage(&names[i]);
        b.stamps[i] = stamp(&msgs[i].msg_hdr);
    }
    Ok(n)
}

/// The `SCM_TIMESTAMPNS` of a received message, in nanoseconds since the Unix epoch.
fn stamp(hdr: &libc::msghdr) -> Option<u64> {
    // SAFETY: `hdr` is a message the kernel just filled: its control pointer and length
    // describe our live control buffer, and the CMSG macros stay within that length.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

fn to_storage(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // We fill the variant the family names.
    let mut s = zeroed_storage();
    let len = match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let p = unsafe { &mut *(&mut s as *mut _ as *mut libc::sockaddr_in) };
            p.sin_family = libc::AF_INET as libc::sa_family_t;
            p.sin_port = v4.port().to_be();
            p.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let p = unsafe { &mut *(&mut s as *mut _ as *mut libc::sockaddr_in6) };
            p.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            p.sin6_port = v6.port().to_be();
            p.sin6_addr.s6_addr = v6.ip().octets();
            p.sin6_flowinfo = v6.flowinfo();
            p.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (s, len as libc::socklen_t)
}

/// Tie `socket` to one peer (`Some`), or untie it (`None`). Tied, the kernel drops datagrams
/// from anyone else before they are queued, and [`send`] with no address skips the route
/// lookup and address copy for every packet.
pub fn set_peer(socket: &UdpSocket, peer: Option<SocketAddr>) -> io::Result<()> {
    if let Some(p) = peer {
        return socket.connect(p);
    }
    let bound = socket.local_addr()?;
    // SAFETY: an all-zero sockaddr is valid; AF_UNSPEC dissolves the association (connect(2)).
    let mut a: libc::sockaddr = unsafe { std::mem::zeroed() };
    a.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: a valid fd and a live sockaddr of the size given.
    let r = unsafe {
        libc::connect(
            socket.as_raw_fd(),
            &a,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // Linux lets go of a port the kernel chose (bound to port 0) on untying: take it back.
    // (RTP ports come from the configured range, bound by number, and are kept.)
    if socket.local_addr()?.port() != bound.port() {
        let (name, len) = to_storage(&bound);
        // SAFETY: a valid fd and a live sockaddr_storage holding `len` bytes of address.
        let r = unsafe { libc::bind(socket.as_raw_fd(), &name as *const _ as *const _, len) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Send `packets` to `to` (to the tied peer when `None`, see [`set_peer`]) in one `sendmmsg`
/// without blocking. Returns how many the kernel took; the rest are dropped.
pub fn send(socket: &UdpSocket, packets: &[Vec<u8>], to: Option<SocketAddr>) -> io::Result<usize> {
    if packets.is_empty() {
        return Ok(0);
    }
    if let ([p], None) = (packets, to) {
        // The usual tick: one packet to the tied peer. send(2) takes no message header, so
        // the kernel copies and checks less than for sendmmsg.
        // SAFETY: a valid fd and a live buffer of the length given, which the kernel only reads.
        let r = unsafe {
            libc::send(
                socket.as_raw_fd(),
                p.as_ptr() as *const libc::c_void,
                p.len(),
                libc::MSG_DONTWAIT,
            )
        };
        return sent_or_dropped(r.min(1) as isize);
    }
    let n = packets.len().min(BATCH);
    let (mut name, namelen) = match &to {
        Some(to) => to_storage(to),
        // Unused: no name is passed.
        None => (zeroed_storage(), 0),
    };
    let name_ptr = match to {
        Some(_) => &mut name as *mut _ as *mut libc::c_void,
        None => std::ptr::null_mut(),
    };
    send_batch(
        socket,
        packets[..n]
            .iter()
            .map(|p| (p.as_slice(), name_ptr, namelen)),
    )
}

/// Send each packet to its own address, [`BATCH`] to a `sendmmsg`, without blocking. Returns
/// how many the kernel took; one it refuses (a full buffer) is dropped and the rest still go.
pub fn send_each(socket: &impl AsRawFd, packets: &[(SocketAddr, Vec<u8>)]) -> io::Result<usize> {
    let mut taken = 0;
    let mut at = 0;
    while at < packets.len() {
        let chunk = &packets[at..packets.len().min(at + BATCH)];
        let mut names = [(zeroed_storage(), 0 as libc::socklen_t); BATCH];
        for (i, (to, _)) in chunk.iter().enumerate() {
            names[i] = to_storage(to);
        }
        let named = chunk
            .iter()
            .zip(names.iter_mut())
            .map(|((_, p), (name, len))| (p.as_slice(), name as *mut _ as *mut libc::c_void, *len));
        let sent = send_batch(socket, named)?;
        taken += sent;
        // The one the kernel stopped at is dropped; carry on after it.
        at += if sent < chunk.len() { sent + 1 } else { sent };
    }
    Ok(taken)
}

/// One `sendmmsg` of up to [`BATCH`] packets, each with the address to send it to (a null
/// name for the tied peer), without blocking: how many the kernel took.
fn send_batch<'a>(
    socket: &impl AsRawFd,
    packets: impl Iterator<Item = (&'a [u8], *mut libc::c_void, libc::socklen_t)>,
) -> io::Result<usize> {
    let mut iov: [MaybeUninit<libc::iovec>; BATCH] = [const { MaybeUninit::uninit() }; BATCH];
    // SAFETY: an all-zero mmsghdr is valid.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    let mut n = 0;
    for (i, (p, name, namelen)) in packets.take(BATCH).enumerate() {
        iov[i].write(libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        });
        msgs[i].msg_hdr.msg_name = name;
        msgs[i].msg_hdr.msg_namelen = namelen;
        msgs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
        msgs[i].msg_hdr.msg_iovlen = 1;
        n = i + 1;
    }
    // SAFETY: the first `n` headers point at live locals, at the callers' addresses and at
    // the packets, which the kernel only reads.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    sent_or_dropped(sent as isize)
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: an all-zero sockaddr_storage is valid.
    unsafe { std::mem::zeroed() }
}

/// A send's result: how many went, or 0 when the kernel dropped them (a full buffer, an ICMP
/// error from an earlier packet) rather than an error.
fn sent_or_dropped(sent: isize) -> io::Result<usize> {
    if sent < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused => Ok(0),
            _ => Err(e),
        };
    }
    Ok(sent as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_out_in_one_call_and_comes_back_in_one_call() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = b.local_addr().unwrap();
        let packets: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10 + i as usize]).collect();
        enable_timestamps(&b).unwrap();
        let wall_ns = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        };
        // The kernel turns arrival stamping on a moment after the first socket asks (Linux
        // enables it from a work queue); until then a datagram is stamped when it is read.
        // Wait for that with single datagrams (ringside asks once, when it starts).
        for _ in 0..200 {
            send(&a, &[vec![0u8]], Some(to)).unwrap();
            let sent = wall_ns();
            std::thread::sleep(std::time::Duration::from_millis(5));
            let mut stamped_on_arrival = false;
            drain(&b, |_, _, at| {
                stamped_on_arrival = at.is_some_and(|at| at <= sent)
            })
            .unwrap();
            if stamped_on_arrival {
                break;
            }
        }
        let before = wall_ns();
        assert_eq!(send(&a, &packets, Some(to)).unwrap(), 5);
        // Loopback delivers inside the send call: a datagram is stamped before it returns.
        let sent = wall_ns();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut got = vec![];
        let n = drain(&b, |d, from, at| {
            // Stamped on arrival, not when read 20 ms later (however long the machine took
            // to make the send call, which a bound on `at - before` would count).
            let at = at.expect("stamped by the kernel");
            assert!(at >= before && at <= sent, "{at} not in {before}..={sent}");
            got.push((d.to_vec(), from))
        })
        .unwrap();
        assert_eq!(n, 5);
        assert_eq!(
            got.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
            packets
        );
        assert!(got.iter().all(|(_, f)| *f == a.local_addr().unwrap()));
        // Nothing waiting: no block, no error.
        assert_eq!(drain(&b, |_, _, _| panic!("nothing to read")).unwrap(), 0);
    }

    #[test]
    fn a_tied_socket_hears_only_its_peer_and_sends_without_an_address() {
        let me = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        set_peer(&me, Some(peer.local_addr().unwrap())).unwrap();
        assert_eq!(send(&me, &[vec![1, 2, 3]], None).unwrap(), 1);
        let mut buf = [0u8; 16];
        peer.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&[1u8, 2, 3][..], me.local_addr().unwrap())
        );
        let to_me = me.local_addr().unwrap();
        stranger.send_to(b"junk", to_me).unwrap();
        peer.send_to(b"rtp", to_me).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut got = vec![];
        drain(&me, |d, from, _| got.push((d.to_vec(), from))).unwrap();
        assert_eq!(got, vec![(b"rtp".to_vec(), peer.local_addr().unwrap())]);
        // Untied, anyone is heard again.
        set_peer(&me, None).unwrap();
        stranger.send_to(b"hello", to_me).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut got = vec![];
        drain(&me, |d, from, _| got.push((d.to_vec(), from))).unwrap();
        assert_eq!(
            got,
            vec![(b"hello".to_vec(), stranger.local_addr().unwrap())]
        );
    }

    #[test]
    fn each_packet_goes_to_its_own_address_and_a_waiting_read_takes_what_is_there() {
        let me = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peers: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let packets: Vec<(SocketAddr, Vec<u8>)> = (0..BATCH + 5)
            .map(|i| (peers[i % 3].local_addr().unwrap(), vec![i as u8; 1 + i]))
            .collect();
        assert_eq!(send_each(&me, &packets).unwrap(), BATCH + 5);
        let mut b = RecvBatch::default();
        for (n, peer) in peers.iter().enumerate() {
            peer.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let got = recv_waiting(peer, &mut b).unwrap();
            let heard: Vec<Vec<u8>> = (0..got)
                .map(|i| {
                    let (d, from, _) = b.get(i).unwrap();
                    assert_eq!(from, me.local_addr().unwrap());
                    d.to_vec()
                })
                .collect();
            let sent: Vec<Vec<u8>> = packets
                .iter()
                .skip(n)
                .step_by(3)
                .map(|(_, p)| p.clone())
                .collect();
            assert_eq!(
                heard, sent,
                "peer {n} hears its own packets, in order, in one read"
            );
        }
        // Nothing waiting: the read waits for the socket's timeout, then says so.
        peers[0]
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        let began = std::time::Instant::now();
        let e = recv_waiting(&peers[0], &mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(began.elapsed() >= std::time::Duration::from_millis(40));
    }

    #[test]
    fn more_than_a_batch_takes_several_drains_and_ipv6_works() {
        let Ok(b) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback on this machine
        };
        let a = UdpSocket::bind("[::1]:0").unwrap();
        for i in 0..(BATCH + 3) {
            a.send_to(&[i as u8], b.local_addr().unwrap()).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let first = drain(&b, |_, from, at| {
            assert_eq!(from, a.local_addr().unwrap());
            assert_eq!(at, None, "no timestamps asked for");
        })
        .unwrap();
        let second = drain(&b, |_, _, _| {}).unwrap();
        assert_eq!((first, second), (BATCH, 3));
    }
}
