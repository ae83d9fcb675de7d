//! RTP sockets for SIP legs. Each leg binds a UDP port from the configured range. The media
//! room's thread does all of a leg's RTP through its [`media::port::Port`]: each tick it reads
//! what has arrived into the [`RtpSession`] (jitter buffer) with one `recvmmsg`, every packet
//! carrying the kernel's arrival time so jitter is measured as if read on arrival, and sends
//! the tick's packets with one `sendmmsg` (both in [`media::udp_batch`]). No task wakes per
//! packet.
//!
//! RTCP goes over the next (odd) port: received reports feed the session, and every
//! [`RTCP_INTERVAL`] the leg sends its SR/RR with SDES to where the far end's RTCP comes from
//! (or its RTP port + 1 until some does); a BYE when the leg ends. RTCP multiplexed on the RTP
//! port (RFC 5761) is read too.

use crate::session::RtpSession;
use media::FRAME;
use media::port::{Port, PortRef};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// RTP ports to bind from: even ports in `[lo, hi)`, handed out round-robin.
pub struct PortRange {
    lo: u16,
    hi: u16,
    next: AtomicU16,
}

impl PortRange {
    pub fn new(lo: u16, hi: u16) -> PortRange {
        let lo = lo + lo % 2;
        PortRange {
            lo,
            hi: hi.max(lo + 2),
            next: AtomicU16::new(lo),
        }
    }

    /// Bind the next free port of the range on `ip`.
    pub fn bind(&self, ip: IpAddr) -> std::io::Result<UdpSocket> {
        let span = (self.hi - self.lo).div_ceil(2).max(1);
        let mut last = None;
        for _ in 0..span {
            let n = self.next.fetch_add(2, Ordering::Relaxed);
            let port = self.lo + (n.wrapping_sub(self.lo) % (span * 2));
            match UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("the RTP port range is empty")))
    }
}

/// A leg's media port over RTP.
pub struct RtpPort {
    session: Arc<Mutex<RtpSession>>,
    io: RtpSocket,
    packets: Vec<Vec<u8>>,
}

/// The leg's RTP socket and what reading it needs (apart from the session, so that a tick
/// can hold the session's lock while it reads).
struct RtpSocket {
    socket: UdpSocket,
    started: Instant,
    /// `started` on the Unix clock (kernel receive times are on it), in nanoseconds.
    started_unix_ns: u64,
    last_rx_ms: Arc<AtomicU64>,
    /// The far end the socket is tied to ([`media::udp_batch::set_peer`]): the latched
    /// address, so the kernel drops RTP from anyone else and sends skip the route lookup.
    peer: Option<SocketAddr>,
}

impl RtpSocket {
    /// Take in what arrived since the last tick.
    fn receive(&mut self, s: &mut RtpSession) {
        let (started, base) = (self.started, self.started_unix_ns);
        let mut got = false;
        // One packet a tick is the norm; a few more after a stall are read in more calls.
        const PER_CALL: usize = 4;
        loop {
            let n = media::udp_batch::drain_up_to(&self.socket, PER_CALL, |d, from, at| {
                let ns = match at {
                    Some(t) => t.saturating_sub(base),
                    None => started.elapsed().as_nanos() as u64,
                };
                // Arrival in samples of the 8 kHz clock.
                s.receive(from, d, ns / 125_000);
            })
            .unwrap_or(0);
            got |= n > 0;
            if n < PER_CALL {
                break;
            }
        }
        if got {
            let ms = started.elapsed().as_millis() as u64;
            self.last_rx_ms.store(ms.max(1), Ordering::Relaxed);
        }
        // Latched: tie the socket to the far end. A new offer unlatches: untie it, so RTP
        // from the new address is heard.
        let want = s.latched_remote();
        if want != self.peer && media::udp_batch::set_peer(&self.socket, want).is_ok() {
            self.peer = want;
        }
    }
}

impl Port for RtpPort {
    fn read(&mut self, out: &mut [i16; FRAME]) -> bool {
        let mut s = self.session.lock().expect("rtp");
        self.io.receive(&mut s);
        s.next_frame(out)
    }

    fn skip(&mut self) -> bool {
        let mut s = self.session.lock().expect("rtp");
        self.io.receive(&mut s);
        s.skip_frame()
    }

    fn write(&mut self, frame: &[i16; FRAME]) {
        let remote = {
            let mut s = self.session.lock().expect("rtp");
            s.send_frame(frame, &mut self.packets);
            s.remote()
        };
        // Non-blocking: a full socket buffer drops the packets, as the network would.
        let to = (self.io.peer != Some(remote)).then_some(remote);
        let _ = media::udp_batch::send(&self.io.socket, &self.packets, to);
        self.packets.clear();
    }

    fn take_tone(&mut self) -> Option<char> {
        self.session.lock().expect("rtp").take_key()
    }

    fn tone_event(&mut self, key: char) -> bool {
        self.session.lock().expect("rtp").queue_key(key)
    }
}

/// A running RTP leg: its port for the room, and when RTP last arrived (media timeout).
/// How often a leg sends RTCP (RFC 3550 §6.2: 5 s minimum for a two-party session).
pub const RTCP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

pub struct RtpLeg {
    pub port: PortRef,
    pub session: Arc<Mutex<RtpSession>>,
    pub local: SocketAddr,
    started: Instant,
    last_rx_ms: Arc<AtomicU64>,
    rtcp: Option<Rtcp>,
}

struct Rtcp {
    socket: Arc<tokio::net::UdpSocket>,
    /// Where the far end's RTCP comes from (learned), else its RTP address + 1.
    peer: Arc<Mutex<Option<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn rtcp_target(peer: &Mutex<Option<SocketAddr>>, session: &Mutex<RtpSession>) -> SocketAddr {
    peer.lock().expect("rtcp").unwrap_or_else(|| {
        let r = session.lock().expect("rtp").remote();
        SocketAddr::new(r.ip(), r.port().wrapping_add(1))
    })
}

impl RtpLeg {
    /// Start receiving on `socket` (bound, e.g. from a [`PortRange`]) into `session`.
    pub fn start(socket: UdpSocket, session: RtpSession) -> std::io::Result<RtpLeg> {
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        media::udp_batch::enable_timestamps(&socket)?;
        let session = Arc::new(Mutex::new(session));
        let started = Instant::now();
        let started_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let last_rx_ms = Arc::new(AtomicU64::new(0));
        let rtcp = Self::start_rtcp(local, &session, started, &last_rx_ms);
        let port: PortRef = Arc::new(Mutex::new(RtpPort {
            session: session.clone(),
            io: RtpSocket {
                socket,
                started,
                started_unix_ns,
                last_rx_ms: last_rx_ms.clone(),
                peer: None,
            },
            packets: Vec::with_capacity(4),
        }));
        Ok(RtpLeg {
            port,
            session,
            local,
            started,
            last_rx_ms,
            rtcp,
        })
    }

    /// Bind RTP port + 1 and run the leg's RTCP (best effort: without it, RTCP can still
    /// arrive multiplexed on the RTP port).
    fn start_rtcp(
        local: SocketAddr,
        session: &Arc<Mutex<RtpSession>>,
        started: Instant,
        last_rx_ms: &Arc<AtomicU64>,
    ) -> Option<Rtcp> {
        let addr = SocketAddr::new(local.ip(), local.port().checked_add(1)?);
        let std_socket = UdpSocket::bind(addr).ok()?;
        std_socket.set_nonblocking(true).ok()?;
        let socket = Arc::new(tokio::net::UdpSocket::from_std(std_socket).ok()?);
        let peer: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let task = {
            let (socket, peer, session, last) = (
                socket.clone(),
                peer.clone(),
                session.clone(),
                last_rx_ms.clone(),
            );
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1500];
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::now() + RTCP_INTERVAL / 2,
                    RTCP_INTERVAL,
                );
                loop {
                    tokio::select! {
                        r = socket.recv_from(&mut buf) => {
                            let Ok((n, from)) = r else { return };
                            let ms = started.elapsed().as_millis() as u64;
                            let before = session.lock().expect("rtp").stats().rtcp_in;
                            session.lock().expect("rtp").receive_rtcp(&buf[..n], ms);
                            if session.lock().expect("rtp").stats().rtcp_in > before {
                                // Valid RTCP: the far end is alive, and this is where it is.
                                last.store(ms.max(1), Ordering::Relaxed);
                                *peer.lock().expect("rtcp") = Some(from);
                            }
                        }
                        _ = tick.tick() => {
                            let ms = started.elapsed().as_millis() as u64;
                            let report = session.lock().expect("rtp").rtcp_report(unix_ms(), ms);
                            let to = rtcp_target(&peer, &session);
                            let _ = socket.send_to(&report, to).await;
                        }
                    }
                }
            })
        };
        Some(Rtcp { socket, peer, task })
    }

    /// Milliseconds since RTP last arrived (since the start if none has).
    pub fn silent_for_ms(&self) -> u64 {
        let now = self.started.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_rx_ms.load(Ordering::Relaxed))
    }
}

impl Drop for RtpLeg {
    fn drop(&mut self) {
        {
            let s = self.session.lock().expect("rtp");
            let (st, (expected, received)) = (s.stats(), s.reception_totals());
            let j = st.jitter;
            tracing::info!(
                local = %self.local,
                remote = %s.remote(),
                packets_in = st.packets_in,
                packets_out = st.packets_out,
                expected,
                received,
                late = j.late,
                concealed = j.lost,
                dropped_for_delay = j.dropped,
                jitter_resyncs = j.resyncs,
                jitter_ms = j.jitter / 8,
                "RTP leg ended"
            );
        }
        if let Some(r) = &self.rtcp {
            r.task.abort();
            let bye = self.session.lock().expect("rtp").rtcp_bye();
            let _ = r
                .socket
                .try_send_to(&bye, rtcp_target(&r.peer, &self.session));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::g711::Law;
    use std::time::Duration;

    fn leg(range: &PortRange, remote: SocketAddr) -> RtpLeg {
        let s = range.bind("127.0.0.1".parse().unwrap()).unwrap();
        RtpLeg::start(s, RtpSession::new(Law::A, 8, Some(101), remote, 7, 1, 1)).unwrap()
    }

    #[tokio::test]
    async fn two_legs_talk_over_real_sockets_with_keys_out_of_band() {
        let range = PortRange::new(41000, 41100);
        let placeholder: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let a = leg(&range, placeholder);
        let b = leg(&range, a.local);
        assert_eq!(a.local.port() % 2, 0, "RTP on even ports");
        assert_ne!(a.local, b.local);
        // b speaks first: a latches onto b's address (symmetric RTP) and answers there.
        let tone: Vec<i16> = (0..FRAME)
            .map(|i| {
                (6000.0 * (2.0 * std::f32::consts::PI * 500.0 * i as f32 / 16000.0).sin()) as i16
            })
            .collect();
        let frame: [i16; FRAME] = tone.try_into().unwrap();
        let mut heard_by_a = 0;
        let mut heard_by_b = 0;
        assert!(b.port.lock().unwrap().tone_event('7'));
        let mut keys = String::new();
        for _ in 0..40 {
            b.port.lock().unwrap().write(&frame);
            a.port.lock().unwrap().write(&frame);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut out = [0i16; FRAME];
            if a.port.lock().unwrap().read(&mut out) && out.iter().any(|&s| s.abs() > 2000) {
                heard_by_a += 1;
            }
            if b.port.lock().unwrap().read(&mut out) && out.iter().any(|&s| s.abs() > 2000) {
                heard_by_b += 1;
            }
            while let Some(k) = a.port.lock().unwrap().take_tone() {
                keys.push(k);
            }
        }
        assert!(heard_by_a > 20, "a hears b: {heard_by_a}");
        assert!(heard_by_b > 15, "b hears a once a latched: {heard_by_b}");
        assert_eq!(keys, "7", "the key arrived once, as an event");
        assert_eq!(a.session.lock().unwrap().remote(), b.local);
        assert!(a.silent_for_ms() < 200);
    }

    #[tokio::test]
    async fn once_latched_only_the_far_end_is_heard_until_a_new_offer_moves_it() {
        let range = PortRange::new(41400, 41500);
        let leg = leg(&range, "127.0.0.1:9".parse().unwrap());
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let moved = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rtp = |seq: u16| {
            let mut b = vec![];
            crate::rtp::Rtp {
                marker: false,
                payload_type: 8,
                sequence: seq,
                timestamp: seq as u32 * 160,
                ssrc: 5,
                payload: &[0xd5; 160],
            }
            .write(&mut b);
            b
        };
        let tick = |leg: &RtpLeg| {
            std::thread::sleep(Duration::from_millis(20));
            let mut out = [0i16; FRAME];
            leg.port.lock().unwrap().read(&mut out);
            leg.port.lock().unwrap().write(&[0; FRAME]);
        };
        let packets_in = |leg: &RtpLeg| leg.session.lock().unwrap().stats().packets_in;
        // The phone is not at the address it signalled (NAT): its second packet in sequence
        // latches it.
        phone.send_to(&rtp(1), leg.local).unwrap();
        phone.send_to(&rtp(2), leg.local).unwrap();
        tick(&leg);
        assert_eq!(packets_in(&leg), 2);
        // Ringside answers where the RTP came from.
        phone
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 1500];
        assert!(phone.recv_from(&mut buf).unwrap().0 > 12);
        // Someone else's packets never reach the session.
        stranger.send_to(&rtp(3), leg.local).unwrap();
        phone.send_to(&rtp(3), leg.local).unwrap();
        tick(&leg);
        assert_eq!(packets_in(&leg), 3);
        assert_eq!(leg.session.lock().unwrap().stats().dropped, 0);
        // A re-INVITE moves the media: the new address is heard and answered.
        leg.session
            .lock()
            .unwrap()
            .renegotiate(&crate::sdp::Negotiated {
                remote: moved.local_addr().unwrap(),
                codec: crate::sdp::Codec::Pcma,
                payload_type: 8,
                dtmf_payload_type: None,
                remote_direction: crate::sdp::Direction::SendRecv,
                ptime_ms: 20,
            });
        tick(&leg);
        moved.send_to(&rtp(4), leg.local).unwrap();
        tick(&leg);
        assert_eq!(packets_in(&leg), 4, "the signalled address latches at once");
        assert_eq!(
            leg.session.lock().unwrap().latched_remote(),
            Some(moved.local_addr().unwrap())
        );
        moved
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert!(moved.recv_from(&mut buf).unwrap().0 > 12);
    }

    #[test]
    fn a_full_range_is_an_error_not_a_hang() {
        let range = PortRange::new(47101, 47105); // even ports 47102 and 47104
        let ip = "127.0.0.1".parse().unwrap();
        let first = range.bind(ip).unwrap();
        let second = range.bind(ip).unwrap();
        let mut ports = [
            first.local_addr().unwrap().port(),
            second.local_addr().unwrap().port(),
        ];
        ports.sort();
        assert_eq!(ports, [47102, 47104]);
        assert!(range.bind(ip).is_err(), "every port of the range is taken");
    }

    #[tokio::test]
    async fn legs_exchange_rtcp_reports_on_the_next_port() {
        let range = PortRange::new(41200, 41300);
        let placeholder: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let a = leg(&range, placeholder);
        let b = leg(&range, a.local);
        let frame = [1000i16; FRAME];
        // Audio both ways for a while; the first reports go out after half an interval.
        let deadline = Instant::now() + RTCP_INTERVAL / 2 + Duration::from_millis(600);
        while Instant::now() < deadline {
            b.port.lock().unwrap().write(&frame);
            a.port.lock().unwrap().write(&frame);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut out = [0i16; FRAME];
            a.port.lock().unwrap().read(&mut out);
            b.port.lock().unwrap().read(&mut out);
        }
        let sa = a.session.lock().unwrap();
        assert!(
            sa.stats().rtcp_in >= 1,
            "a got b's report: {:?}",
            sa.stats()
        );
        let far = sa.far_report().expect("b reported on a's stream");
        assert_eq!(far.cumulative_lost, 0, "nothing lost over loopback");
        assert!(far.highest_seq > 50, "{far:?}");
        assert!(b.session.lock().unwrap().stats().rtcp_in >= 1);
    }
}
