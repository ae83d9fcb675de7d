//! Graph enumerations: serialized camelCase, parsed case-insensitively (reference §1.2, §4).
//! Real traffic mixes `"Established"`, `"established"` and CSDL numbers; all are accepted.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

macro_rules! graph_enum {
    ($(#[$meta:meta])* $name:ident, $graph_name:literal { $($variant:ident = $num:literal => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                $(if s.eq_ignore_ascii_case($text) { return Some($name::$variant); })+
                None
            }
            pub fn from_number(n: i64) -> Option<Self> {
                match n { $($num => Some($name::$variant),)+ _ => None }
            }
            fn expected() -> String {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                format!("one of {} for {}", names.join(", "), $graph_name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.as_str()) }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(&$name::expected())
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::parse(v).ok_or_else(|| E::custom(format!("unknown value '{}', expected {}", v, $name::expected())))
                    }
                    fn visit_i64<E: de::Error>(self, v: i64) -> Result<$name, E> {
                        $name::from_number(v).ok_or_else(|| E::custom(format!("unknown value {}, expected {}", v, $name::expected())))
                    }
                    fn visit_u64<E: de::Error>(self, v: u64) -> Result<$name, E> {
                        self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

graph_enum!(CallState, "callState" {
    Incoming = 0 => "incoming", Establishing = 1 => "establishing", Ringing = 2 => "ringing",
    Established = 3 => "established", Hold = 4 => "hold", Transferring = 5 => "transferring",
    TransferAccepted = 6 => "transferAccepted", Redirecting = 7 => "redirecting",
    Terminating = 8 => "terminating", Terminated = 9 => "terminated",
    UnknownFutureValue = 10 => "unknownFutureValue",
});
graph_enum!(CallDirection, "callDirection" { Incoming = 0 => "incoming", Outgoing = 1 => "outgoing" });
graph_enum!(Modality, "modality" {
    Unknown = 0 => "unknown", Audio = 1 => "audio", Video = 2 => "video",
    VideoBasedScreenSharing = 3 => "videoBasedScreenSharing", Data = 4 => "data",
    UnknownFutureValue = 5 => "unknownFutureValue",
});
graph_enum!(MediaState, "mediaState" { Active = 0 => "active", Inactive = 1 => "inactive", UnknownFutureValue = 2 => "unknownFutureValue" });
graph_enum!(MediaDirection, "mediaDirection" {
    Inactive = 0 => "inactive", SendOnly = 1 => "sendOnly", ReceiveOnly = 2 => "receiveOnly", SendReceive = 3 => "sendReceive",
});
graph_enum!(OperationStatus, "operationStatus" {
    NotStarted = 0 => "notStarted", Running = 1 => "running", Completed = 2 => "completed", Failed = 3 => "failed",
});
graph_enum!(Tone, "tone" {
    Tone0 = 0 => "tone0", Tone1 = 1 => "tone1", Tone2 = 2 => "tone2", Tone3 = 3 => "tone3", Tone4 = 4 => "tone4",
    Tone5 = 5 => "tone5", Tone6 = 6 => "tone6", Tone7 = 7 => "tone7", Tone8 = 8 => "tone8", Tone9 = 9 => "tone9",
    Star = 10 => "star", Pound = 11 => "pound", A = 12 => "a", B = 13 => "b", C = 14 => "c", D = 15 => "d",
    Flash = 16 => "flash",
});
graph_enum!(RejectReason, "rejectReason" { None = 0 => "none", Busy = 1 => "busy", Forbidden = 2 => "forbidden", UnknownFutureValue = 3 => "unknownFutureValue" });
graph_enum!(ScreenSharingRole, "screenSharingRole" { Viewer = 0 => "viewer", Sharer = 1 => "sharer" });
graph_enum!(RecordingStatus, "recordingStatus" {
    Unknown = 0 => "unknown", NotRecording = 1 => "notRecording", Recording = 2 => "recording", Failed = 3 => "failed",
    UnknownFutureValue = 4 => "unknownFutureValue",
});
graph_enum!(RoutingMode, "routingMode" { OneToOne = 0 => "oneToOne", Multicast = 1 => "multicast", UnknownFutureValue = 2 => "unknownFutureValue" });
graph_enum!(EndpointType, "endpointType" {
    Default = 0 => "default", Voicemail = 1 => "voicemail", SkypeForBusiness = 2 => "skypeForBusiness",
    SkypeForBusinessVoipPhone = 3 => "skypeForBusinessVoipPhone", UnknownFutureValue = 4 => "unknownFutureValue",
});
graph_enum!(TranscriptionState, "callTranscriptionState" { NotStarted = 0 => "notStarted", Active = 1 => "active", Inactive = 2 => "inactive", UnknownFutureValue = 3 => "unknownFutureValue" });
graph_enum!(CompletionReason, "completionReason" {
    Unknown = 0 => "unknown", CompletedSuccessfully = 1 => "completedSuccessfully",
    MediaOperationCanceled = 2 => "mediaOperationCanceled", UnknownFutureValue = 3 => "unknownFutureValue",
});
graph_enum!(RecordCompletionReason, "recordCompletionReason" {
    OperationCanceled = 0 => "operationCanceled", StopToneDetected = 1 => "stopToneDetected",
    MaxRecordDurationReached = 2 => "maxRecordDurationReached", InitialSilenceTimeout = 3 => "initialSilenceTimeout",
    MaxSilenceTimeout = 4 => "maxSilenceTimeout", PlayPromptFailed = 5 => "playPromptFailed",
    PlayBeepFailed = 6 => "playBeepFailed", MediaReceiveTimeout = 7 => "mediaReceiveTimeout",
    UnspecifiedError = 8 => "unspecifiedError", None = 9 => "none",
});
graph_enum!(ChangeType, "changeType" { Created = 0 => "created", Updated = 1 => "updated", Deleted = 2 => "deleted" });

impl Tone {
    /// The DTMF character for a tone (`tone1` → '1', `pound` → '#').
    pub fn to_char(self) -> char {
        match self {
            Tone::Tone0 => '0',
            Tone::Tone1 => '1',
            Tone::Tone2 => '2',
            Tone::Tone3 => '3',
            Tone::Tone4 => '4',
            Tone::Tone5 => '5',
            Tone::Tone6 => '6',
            Tone::Tone7 => '7',
            Tone::Tone8 => '8',
            Tone::Tone9 => '9',
            Tone::Star => '*',
            Tone::Pound => '#',
            Tone::A => 'A',
            Tone::B => 'B',
            Tone::C => 'C',
            Tone::D => 'D',
            Tone::Flash => '!',
        }
    }
    pub fn from_char(c: char) -> Option<Tone> {
        Some(match c.to_ascii_uppercase() {
            '0' => Tone::Tone0,
            '1' => Tone::Tone1,
            '2' => Tone::Tone2,
            '3' => Tone::Tone3,
            '4' => Tone::Tone4,
            '5' => Tone::Tone5,
            '6' => Tone::Tone6,
            '7' => Tone::Tone7,
            '8' => Tone::Tone8,
            '9' => Tone::Tone9,
            '*' => Tone::Star,
            '#' => Tone::Pound,
            'A' => Tone::A,
            'B' => Tone::B,
            'C' => Tone::C,
            'D' => Tone::D,
            '!' => Tone::Flash,
            _ => return None,
        })
    }
    /// `stopTones` in recordResponse are strings: accept "#", "pound", "tone1", "1".
    pub fn parse_loose(s: &str) -> Option<Tone> {
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Tone::from_char(c),
            _ => Tone::parse(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_any_case_and_numbers_and_emit_camel_case() {
        let s: CallState = serde_json::from_str("\"Established\"").unwrap();
        assert_eq!(s, CallState::Established);
        let s: CallState = serde_json::from_str("3").unwrap();
        assert_eq!(s, CallState::Established);
        assert_eq!(
            serde_json::to_string(&CallState::TransferAccepted).unwrap(),
            "\"transferAccepted\""
        );
        let err = serde_json::from_str::<RejectReason>("\"maybe\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("none, busy, forbidden"), "{err}");
    }

    #[test]
    fn stop_tones_accept_characters_and_names() {
        assert_eq!(Tone::parse_loose("#"), Some(Tone::Pound));
        assert_eq!(Tone::parse_loose("pound"), Some(Tone::Pound));
        assert_eq!(Tone::parse_loose("tone7"), Some(Tone::Tone7));
        assert_eq!(Tone::parse_loose("x"), None);
    }
}
