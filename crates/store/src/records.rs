//! What a store keeps besides calls and notifications: recordings, device quality reports,
//! transcripts and their lines.

use crate::sql::{Result, Row, V};
use crate::store::Store;
use serde_json::Value;

/// A recording: a recordResponse result (`kind` "response", downloaded with its token), a
/// call recording ("call", listed and downloaded with the app's Graph token) or one
/// participant's track of a call recording ("track", with `parent_id`). `duration_ms` is None
/// while recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub id: String,
    pub call_id: String,
    pub tenant_id: String,
    pub app_id: String,
    pub kind: String,
    pub token: String,
    pub path: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub duration_ms: Option<i64>,
    pub parent_id: Option<String>,
    pub participant_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTranscript {
    pub id: String,
    pub call_id: String,
    pub meeting_id: Option<String>,
    pub tenant_id: String,
    pub app_id: String,
    pub created_ms: i64,
    pub ended_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLine {
    pub participant_id: String,
    pub speaker: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub text: String,
    pub gap: bool,
}

const RECORDING_FIELDS: &str = "id, call_id, tenant_id, app_id, kind, token, path, created_ms, expires_ms, duration_ms, parent_id, participant_id";
const TRANSCRIPT_FIELDS: &str = "id, call_id, meeting_id, tenant_id, app_id, created_ms, ended_ms";

impl Store {
    pub fn log_device_quality(
        &mut self,
        tenant: &str,
        app: &str,
        now_ms: i64,
        json: &Value,
    ) -> Result<i64> {
        self.db
            .one(
                "INSERT INTO device_quality(tenant_id,app_id,received_ms,json) VALUES(?1,?2,?3,?4) RETURNING id",
                &[tenant.into(), app.into(), now_ms.into(), json.to_string().into()],
            )?
            .map_or(Ok(0), |r| r.i(0))
    }

    pub fn device_quality(&mut self, tenant: &str) -> Result<Vec<(i64, String, i64, Value)>> {
        self.db
            .query(
                "SELECT id, app_id, received_ms, json FROM device_quality WHERE tenant_id=?1 ORDER BY id",
                &[tenant.into()],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.i(0)?,
                    r.s(1)?,
                    r.i(2)?,
                    serde_json::from_str(&r.s(3)?).unwrap_or(Value::Null),
                ))
            })
            .collect()
    }

    /// Add a recording, or complete one already listed (a call recording that was in
    /// progress): its duration is set and its retention starts again.
    pub fn save_recording(&mut self, r: &Recording) -> Result<()> {
        self.db.exec(
            "INSERT INTO recordings(id,call_id,token,path,created_ms,expires_ms,tenant_id,app_id,duration_ms,kind,parent_id,participant_id)
             VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)
             ON CONFLICT(id) DO UPDATE SET duration_ms=excluded.duration_ms, expires_ms=excluded.expires_ms",
            &[
                (&r.id).into(),
                (&r.call_id).into(),
                (&r.token).into(),
                (&r.path).into(),
                r.created_ms.into(),
                r.expires_ms.into(),
                (&r.tenant_id).into(),
                (&r.app_id).into(),
                r.duration_ms.into(),
                (&r.kind).into(),
                r.parent_id.as_ref().into(),
                r.participant_id.as_ref().into(),
            ],
        )?;
        Ok(())
    }

    fn recordings_where(&mut self, filter: &str, params: &[V]) -> Result<Vec<Recording>> {
        self.db
            .query(
                &format!("SELECT {RECORDING_FIELDS} FROM recordings {filter}"),
                params,
            )?
            .iter()
            .map(recording_of)
            .collect()
    }

    pub fn recording(&mut self, id: &str) -> Result<Option<Recording>> {
        Ok(self
            .recordings_where("WHERE id=?1", &[id.into()])?
            .into_iter()
            .next())
    }

    /// Recordings that were in progress when the process stopped.
    pub fn unfinished_recordings(&mut self) -> Result<Vec<Recording>> {
        self.recordings_where("WHERE duration_ms IS NULL", &[])
    }

    /// The call recordings of a call and their tracks, oldest first.
    pub fn recordings_of_call(&mut self, call_id: &str) -> Result<Vec<Recording>> {
        self.recordings_where(
            "WHERE call_id=?1 AND kind IN ('call','track') ORDER BY created_ms, id",
            &[call_id.into()],
        )
    }

    /// The most recent recordings of every kind, newest first (the admin console's list).
    pub fn recent_recordings(&mut self, limit: usize) -> Result<Vec<Recording>> {
        self.recordings_where(
            "ORDER BY created_ms DESC, id DESC LIMIT ?1",
            &[(limit as i64).into()],
        )
    }

    /// Forget expired recordings; returns their file paths for deletion.
    pub fn expire_recordings(&mut self, now_ms: i64) -> Result<Vec<String>> {
        self.db.transaction(|db| {
            let paths = db
                .query(
                    "SELECT path FROM recordings WHERE expires_ms <= ?1",
                    &[now_ms.into()],
                )?
                .iter()
                .map(|r| r.s(0))
                .collect::<Result<Vec<_>>>()?;
            db.exec(
                "DELETE FROM recordings WHERE expires_ms <= ?1",
                &[now_ms.into()],
            )?;
            Ok(paths)
        })
    }

    pub fn transcript(&mut self, id: &str) -> Result<Option<StoredTranscript>> {
        self.db
            .one(
                &format!("SELECT {TRANSCRIPT_FIELDS} FROM transcripts WHERE id=?1"),
                &[id.into()],
            )?
            .map(|r| transcript_of(&r))
            .transpose()
    }

    /// A call's transcripts (`by_meeting` false) or a meeting's, oldest first.
    pub fn transcripts_of(
        &mut self,
        owner: &str,
        by_meeting: bool,
    ) -> Result<Vec<StoredTranscript>> {
        let col = if by_meeting { "meeting_id" } else { "call_id" };
        self.db
            .query(
                &format!(
                    "SELECT {TRANSCRIPT_FIELDS} FROM transcripts WHERE {col}=?1 ORDER BY created_ms, id"
                ),
                &[owner.into()],
            )?
            .iter()
            .map(transcript_of)
            .collect()
    }

    /// A transcript's lines in the order they were said.
    pub fn transcript_lines(&mut self, transcript_id: &str) -> Result<Vec<StoredLine>> {
        self.db
            .query(
                "SELECT participant_id, speaker, start_ms, end_ms, text, gap FROM transcript_lines
                 WHERE transcript_id=?1 ORDER BY start_ms, seq",
                &[transcript_id.into()],
            )?
            .iter()
            .map(|r| {
                Ok(StoredLine {
                    participant_id: r.s(0)?,
                    speaker: r.s(1)?,
                    start_ms: r.i(2)?,
                    end_ms: r.i(3)?,
                    text: r.s(4)?,
                    gap: r.b(5)?,
                })
            })
            .collect()
    }
}

fn recording_of(r: &Row) -> Result<Recording> {
    Ok(Recording {
        id: r.s(0)?,
        call_id: r.s(1)?,
        tenant_id: r.s(2)?,
        app_id: r.s(3)?,
        kind: r.s(4)?,
        token: r.s(5)?,
        path: r.s(6)?,
        created_ms: r.i(7)?,
        expires_ms: r.i(8)?,
        duration_ms: r.oi(9)?,
        parent_id: r.os(10)?,
        participant_id: r.os(11)?,
    })
}

fn transcript_of(r: &Row) -> Result<StoredTranscript> {
    Ok(StoredTranscript {
        id: r.s(0)?,
        call_id: r.s(1)?,
        meeting_id: r.os(2)?,
        tenant_id: r.s(3)?,
        app_id: r.s(4)?,
        created_ms: r.i(5)?,
        ended_ms: r.oi(6)?,
    })
}
