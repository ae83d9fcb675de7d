//! SDP offer/answer for audio legs (RFC 3264), on sdp-types for the syntax.
//!
//! ringside offers PCMU (0), PCMA (8) and telephone-event (101) at 20 ms. Answering an offer,
//! it takes the first audio `m=` line over RTP/AVP, picks the first of the offer's formats it
//! supports (in the offerer's order of preference), takes telephone-event if offered, and
//! mirrors the direction (`sendonly` is answered `recvonly`: the far end put us on hold).
//! Every other `m=` line is declined with port 0, as RFC 3264 §6 requires. Nothing usable:
//! [`SdpError::NotAcceptable`], which the dialog answers with 488.

use sdp_types::{Attribute, Connection, Media, Origin, Session};
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdpError {
    /// Not SDP, or SDP ringside cannot read (answered 400).
    Malformed(String),
    /// Nothing in it that ringside can do (answered 488).
    NotAcceptable(String),
}

impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdpError::Malformed(m) => write!(f, "malformed SDP: {m}"),
            SdpError::NotAcceptable(m) => write!(f, "no acceptable media: {m}"),
        }
    }
}

impl std::error::Error for SdpError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    pub fn static_pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    /// The answer to an offer with this direction.
    pub fn mirrored(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }
    /// Whether the side whose SDP says this puts the call on hold (it will not listen).
    pub fn is_hold(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::Inactive)
    }
}

/// What ringside puts in its own SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub addr: IpAddr,
    pub rtp_port: u16,
    pub session_id: u64,
    /// Incremented for every new offer or answer in the dialog (o= line).
    pub version: u64,
}

/// The agreed media of a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Where to send RTP (until symmetric RTP latches onto where it really comes from).
    pub remote: SocketAddr,
    pub codec: Codec,
    pub payload_type: u8,
    pub dtmf_payload_type: Option<u8>,
    /// The far end's direction, as it said it.
    pub remote_direction: Direction,
    pub ptime_ms: u32,
}

/// Payload type ringside offers for telephone-event.
pub const DTMF_PT: u8 = 101;

fn session(local: &Local) -> Session {
    let mut s = Session::new(
        Origin::with_ip_addr(local.session_id, local.version, local.addr),
        "ringside",
    );
    s.origin.username = Some("ringside".into());
    s.connection = Some(Connection::from_ip_addr(local.addr));
    s.times.push(sdp_types::Time::new(0, 0));
    s
}

fn audio(port: u16, fmts: &[u8], attrs: Vec<Attribute>) -> Media {
    let fmt: Vec<String> = fmts.iter().map(u8::to_string).collect();
    Media {
        media: "audio".into(),
        port,
        num_ports: None,
        proto: "RTP/AVP".into(),
        fmt: fmt.join(" "),
        media_title: None,
        connections: vec![],
        bandwidths: vec![],
        key: None,
        attributes: attrs,
    }
}

fn write(s: &Session) -> Vec<u8> {
    let mut out = vec![];
    s.write(&mut out).expect("writing to a Vec");
    out
}

/// ringside's offer: PCMU, PCMA, telephone-event, 20 ms, in the given direction.
pub fn offer(local: &Local, direction: Direction) -> Vec<u8> {
    let mut s = session(local);
    s.medias.push(audio(
        local.rtp_port,
        &[0, 8, DTMF_PT],
        vec![
            Attribute::with_value("rtpmap", "0 PCMU/8000"),
            Attribute::with_value("rtpmap", "8 PCMA/8000"),
            Attribute::with_value("rtpmap", format!("{DTMF_PT} telephone-event/8000")),
            Attribute::with_value("fmtp", format!("{DTMF_PT} 0-15")),
            Attribute::with_value("ptime", "20"),
            Attribute::new(direction.attr()),
        ],
    ));
    write(&s)
}

fn parse(body: &[u8]) -> Result<Session, SdpError> {
    if body.is_empty() {
        return Err(SdpError::Malformed("empty body".into()));
    }
    Session::parse(body).map_err(|e| SdpError::Malformed(e.to_string()))
}

fn direction_of(s: &Session, m: &Media) -> Direction {
    for a in m.attributes.iter().chain(&s.attributes) {
        match a.attribute.to_ascii_lowercase().as_str() {
            "sendrecv" => return Direction::SendRecv,
            "sendonly" => return Direction::SendOnly,
            "recvonly" => return Direction::RecvOnly,
            "inactive" => return Direction::Inactive,
            _ => {}
        }
    }
    Direction::SendRecv
}

/// `(payload type, encoding name, clock rate)` of each `a=rtpmap`.
fn rtpmaps(m: &Media) -> Vec<(u8, String, u32)> {
    m.attributes
        .iter()
        .filter(|a| a.attribute.eq_ignore_ascii_case("rtpmap"))
        .filter_map(|a| {
            let v = a.value.as_deref()?;
            let (pt, rest) = v.trim().split_once(' ')?;
            let mut enc = rest.trim().split('/');
            let name = enc.next()?.to_ascii_uppercase();
            let rate = enc.next()?.parse().ok()?;
            Some((pt.parse().ok()?, name, rate))
        })
        .collect()
}

/// What a format of this media line is, by its rtpmap or its static payload type.
fn codec_of(pt: u8, maps: &[(u8, String, u32)]) -> Option<Codec> {
    match maps.iter().find(|m| m.0 == pt) {
        Some((_, name, 8000)) if name == "PCMU" => Some(Codec::Pcmu),
        Some((_, name, 8000)) if name == "PCMA" => Some(Codec::Pcma),
        Some(_) => None,
        None if pt == 0 => Some(Codec::Pcmu),
        None if pt == 8 => Some(Codec::Pcma),
        None => None,
    }
}

/// The media of one audio line, if ringside can do it.
fn negotiate(s: &Session, m: &Media) -> Result<Negotiated, String> {
    if !m.proto.eq_ignore_ascii_case("RTP/AVP") {
        return Err(format!(
            "transport {} is not supported (RTP/AVP only)",
            m.proto
        ));
    }
    let fmts: Vec<u8> = m
        .fmt
        .split_whitespace()
        .map(|f| {
            f.parse()
                .map_err(|_| format!("format '{f}' is not a payload type"))
        })
        .collect::<Result<_, _>>()?;
    let maps = rtpmaps(m);
    let (pt, codec) = fmts
        .iter()
        .find_map(|&pt| codec_of(pt, &maps).map(|c| (pt, c)))
        .ok_or_else(|| format!("none of the formats [{}] is PCMU or PCMA", m.fmt))?;
    let dtmf = fmts.iter().copied().find(|pt| {
        maps.iter()
            .any(|(p, name, rate)| p == pt && name == "TELEPHONE-EVENT" && *rate == 8000)
    });
    let conn = m
        .connections
        .first()
        .or(s.connection.as_ref())
        .ok_or("no connection address (c=)")?;
    let ip: IpAddr = conn
        .connection_address
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|_| {
            format!(
                "connection address '{}' is not an IP address",
                conn.connection_address
            )
        })?;
    let mut direction = direction_of(s, m);
    // RFC 2543 hold: c=0.0.0.0.
    if ip.is_unspecified() && direction == Direction::SendRecv {
        direction = Direction::Inactive;
    }
    let ptime = m
        .attributes
        .iter()
        .find(|a| a.attribute.eq_ignore_ascii_case("ptime"))
        .and_then(|a| a.value.as_deref()?.trim().parse().ok())
        .unwrap_or(20);
    Ok(Negotiated {
        remote: SocketAddr::new(ip, m.port),
        codec,
        payload_type: pt,
        dtmf_payload_type: dtmf,
        remote_direction: direction,
        ptime_ms: ptime,
    })
}

/// Answer an offer: the answer's body and the agreed media.
pub fn answer(offer: &[u8], local: &Local) -> Result<(Vec<u8>, Negotiated), SdpError> {
    let s = parse(offer)?;
    let mut chosen: Option<(usize, Negotiated)> = None;
    let mut why = vec![];
    for (i, m) in s.medias.iter().enumerate() {
        if !m.media.eq_ignore_ascii_case("audio") || m.port == 0 || chosen.is_some() {
            continue;
        }
        match negotiate(&s, m) {
            Ok(n) => chosen = Some((i, n)),
            Err(e) => why.push(e),
        }
    }
    let Some((index, n)) = chosen else {
        return Err(SdpError::NotAcceptable(if why.is_empty() {
            "the offer has no audio stream".into()
        } else {
            why.join("; ")
        }));
    };
    let mut out = session(local);
    for (i, m) in s.medias.iter().enumerate() {
        if i != index {
            // Declined: same media and proto, port 0, the first format (RFC 3264 §6).
            let first = m.fmt.split_whitespace().next().unwrap_or("0").to_string();
            out.medias.push(Media {
                media: m.media.clone(),
                port: 0,
                num_ports: None,
                proto: m.proto.clone(),
                fmt: first,
                media_title: None,
                connections: vec![],
                bandwidths: vec![],
                key: None,
                attributes: vec![],
            });
            continue;
        }
        let mut fmts = vec![n.payload_type];
        let mut attrs = vec![Attribute::with_value(
            "rtpmap",
            format!("{} {}/8000", n.payload_type, n.codec.name()),
        )];
        if let Some(d) = n.dtmf_payload_type {
            fmts.push(d);
            attrs.push(Attribute::with_value(
                "rtpmap",
                format!("{d} telephone-event/8000"),
            ));
            attrs.push(Attribute::with_value("fmtp", format!("{d} 0-15")));
        }
        attrs.push(Attribute::with_value("ptime", "20"));
        attrs.push(Attribute::new(n.remote_direction.mirrored().attr()));
        out.medias.push(audio(local.rtp_port, &fmts, attrs));
    }
    Ok((write(&out), n))
}

/// Read the answer to ringside's own offer.
pub fn accept_answer(answer: &[u8]) -> Result<Negotiated, SdpError> {
    let s = parse(answer)?;
    let mut why = vec![];
    for m in &s.medias {
        if !m.media.eq_ignore_ascii_case("audio") || m.port == 0 {
            continue;
        }
        match negotiate(&s, m) {
            Ok(n) => return Ok(n),
            Err(e) => why.push(e),
        }
    }
    Err(SdpError::NotAcceptable(if why.is_empty() {
        "the answer accepted no audio stream".into()
    } else {
        why.join("; ")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Local {
        Local {
            addr: "127.0.0.1".parse().unwrap(),
            rtp_port: 40000,
            session_id: 42,
            version: 1,
        }
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    const PHONE: &str = "v=0\r\no=alice 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 9 8 0 96\r\na=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=ptime:20\r\na=sendrecv\r\n\
m=video 5006 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n";

    #[test]
    fn an_offer_is_answered_with_its_first_supported_codec_and_dtmf() {
        let (body, n) = answer(PHONE.as_bytes(), &local()).unwrap();
        assert_eq!(
            n.codec,
            Codec::Pcma,
            "PCMA comes before PCMU in the offer; G.722 is skipped"
        );
        assert_eq!(n.payload_type, 8);
        assert_eq!(
            n.dtmf_payload_type,
            Some(96),
            "the offerer's telephone-event number"
        );
        assert_eq!(n.remote, "10.0.0.5:5004".parse().unwrap());
        let t = text(&body);
        assert!(t.contains("m=audio 40000 RTP/AVP 8 96\r\n"), "{t}");
        assert!(t.contains("a=rtpmap:96 telephone-event/8000"), "{t}");
        assert!(t.contains("a=sendrecv"), "{t}");
        assert!(
            t.contains("m=video 0 RTP/AVP 97"),
            "video declined with port 0: {t}"
        );
        assert!(t.contains("c=IN IP4 127.0.0.1"), "{t}");
    }

    #[test]
    fn hold_offers_are_mirrored() {
        for (attr, answered, hold) in [
            ("a=sendonly", "a=recvonly", true),
            ("a=inactive", "a=inactive", true),
            ("a=recvonly", "a=sendonly", false),
        ] {
            let o = PHONE.replace("a=sendrecv", attr);
            let (body, n) = answer(o.as_bytes(), &local()).unwrap();
            assert!(text(&body).contains(answered), "{attr}: {}", text(&body));
            assert_eq!(n.remote_direction.is_hold(), hold, "{attr}");
        }
        let old_style = PHONE.replace("c=IN IP4 10.0.0.5", "c=IN IP4 0.0.0.0");
        let (_, n) = answer(old_style.as_bytes(), &local()).unwrap();
        assert_eq!(
            n.remote_direction,
            Direction::Inactive,
            "c=0.0.0.0 is hold (RFC 2543)"
        );
    }

    #[test]
    fn nothing_usable_is_488_and_garbage_is_400() {
        let opus = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 5004 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(matches!(
            answer(opus.as_bytes(), &local()),
            Err(SdpError::NotAcceptable(_))
        ));
        let srtp = PHONE.replace("RTP/AVP 9 8 0 96", "RTP/SAVP 0");
        assert!(matches!(
            answer(srtp.as_bytes(), &local()),
            Err(SdpError::NotAcceptable(_))
        ));
        let video_only = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5 RTP/AVP 97\r\n";
        assert!(matches!(
            answer(video_only.as_bytes(), &local()),
            Err(SdpError::NotAcceptable(_))
        ));
        for bad in ["", "hello", "v=0\r\nm=audio x RTP/AVP 0\r\n"] {
            assert!(answer(bad.as_bytes(), &local()).is_err(), "{bad:?}");
        }
        let static_only = "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 7078 RTP/AVP 0\r\n";
        let (_, n) = answer(static_only.as_bytes(), &local()).unwrap();
        assert_eq!(
            (n.codec, n.dtmf_payload_type),
            (Codec::Pcmu, None),
            "static PT without rtpmap"
        );
    }

    #[test]
    fn our_offer_is_accepted_by_our_answer() {
        let o = offer(&local(), Direction::SendRecv);
        let t = text(&o);
        assert!(t.contains("m=audio 40000 RTP/AVP 0 8 101"), "{t}");
        let mut far = local();
        far.rtp_port = 50000;
        far.addr = "10.1.1.1".parse().unwrap();
        let (ans, n) = answer(&o, &far).unwrap();
        assert_eq!((n.codec, n.dtmf_payload_type), (Codec::Pcmu, Some(DTMF_PT)));
        let back = accept_answer(&ans).unwrap();
        assert_eq!(back.remote, "10.1.1.1:50000".parse().unwrap());
        assert_eq!(back.codec, Codec::Pcmu);
        let held = offer(&local(), Direction::SendOnly);
        let (ans, _) = answer(&held, &far).unwrap();
        assert_eq!(
            accept_answer(&ans).unwrap().remote_direction,
            Direction::RecvOnly
        );
    }
}
