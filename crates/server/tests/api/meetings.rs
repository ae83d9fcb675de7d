//! Meetings and group calls: one roster per meeting, invite, mute, hold music, routing groups.

use crate::common::*;
use serde_json::{Value, json};

pub(crate) async fn create_meeting(h: &Harness) -> Value {
    let (s, v, headers) = h
        .req(
            "POST",
            "/beta/communications/onlineMeetings",
            Some(json!({"subject": "Standup"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(headers.contains_key("location"));
    v
}

pub(crate) fn join_body(h: &Harness, meeting: &Value, how: &str) -> Value {
    let media = json!({"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"});
    match how {
        "chat" => json!({
            "callbackUri": h.callback(), "requestedModalities": ["audio"], "mediaConfig": media,
            "chatInfo": {"threadId": meeting["chatInfo"]["threadId"], "messageId": "0"},
            "meetingInfo": {"@odata.type": "#microsoft.graph.organizerMeetingInfo", "organizer": {"user": {"id": "organizer-1", "tenantId": TENANT}}},
        }),
        _ => json!({
            "callbackUri": h.callback(), "requestedModalities": ["audio"], "mediaConfig": media,
            "meetingInfo": {"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": meeting["joinMeetingIdSettings"]["joinMeetingId"], "passcode": meeting["joinMeetingIdSettings"]["passcode"]},
        }),
    }
}

fn roster_ids(n: &Note) -> Vec<String> {
    n.data
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn online_meeting_has_a_teams_shaped_join_url_and_can_be_read_back() {
    let h = Harness::start().await;
    let m = create_meeting(&h).await;
    let url = m["joinWebUrl"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/l/meetup-join/19%3Ameeting_", h.base)),
        "{url}"
    );
    assert!(
        url.contains("%40thread.v2/0?context=%7B%22Tid%22%3A%22"),
        "{url}"
    );
    assert!(
        m["chatInfo"]["threadId"]
            .as_str()
            .unwrap()
            .starts_with("19:meeting_")
    );
    assert_eq!(
        m["joinMeetingIdSettings"]["joinMeetingId"]
            .as_str()
            .unwrap()
            .len(),
        12
    );
    let (s, v, _) = h
        .req(
            "GET",
            &format!(
                "/beta/communications/onlineMeetings/{}",
                m["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["joinWebUrl"], m["joinWebUrl"]);
    let other = h.app_token(TENANT2, APP3, "secret-three").await;
    let (s, _, _) = h
        .req_as(
            &other,
            "GET",
            &format!(
                "/beta/communications/onlineMeetings/{}",
                m["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(s, 404, "other tenants cannot see the meeting");
}

#[tokio::test]
async fn bots_joining_one_meeting_share_one_roster_and_invited_users_join_it() {
    let h = Harness::start().await;
    let m = create_meeting(&h).await;
    let (s, a, _) = h
        .req(
            "POST",
            "/v1.0/communications/calls",
            Some(join_body(&h, &m, "chat")),
        )
        .await;
    assert_eq!(s, 201, "{a}");
    let a_id = a["id"].as_str().unwrap().to_string();
    let a_me = a["myParticipantId"].as_str().unwrap().to_string();
    h.until_state(&a_id, "established").await;
    let t2 = h.app_token(TENANT, APP2, "secret-two").await;
    let (s, b, _) = h
        .req_as(
            &t2,
            "POST",
            "/v1.0/communications/calls",
            Some(join_body(&h, &m, "id")),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let b_id = b["id"].as_str().unwrap().to_string();
    let b_me = b["myParticipantId"].as_str().unwrap().to_string();
    let rosters = h
        .until(&a_id, "second bot in roster", |n| {
            n.resource.ends_with("/participants") && roster_ids(n).contains(&b_me)
        })
        .await;
    assert!(roster_ids(rosters.last().unwrap()).contains(&a_me));

    // Invite a user into the meeting: operation running, then completed; roster has her.
    let (s, op, headers) = h.req("POST", &format!("/v1.0/communications/calls/{a_id}/participants/invite"), Some(json!({"participants": [{"identity": {"user": {"id": ALICE, "displayName": "Alice"}}}], "clientContext": "inv"}))).await;
    assert_eq!(s, 200, "{op}");
    assert!(headers.contains_key("location"));
    assert_eq!(
        op["@odata.type"],
        "#microsoft.graph.inviteParticipantsOperation"
    );
    assert_eq!(op["status"], "running");
    let op_id = op["id"].as_str().unwrap().to_string();
    let notes = h
        .until(&a_id, "invite completed", |n| n.resource.ends_with(&op_id))
        .await;
    assert_eq!(notes.last().unwrap().data["status"], "completed");
    assert_eq!(notes.last().unwrap().data["clientContext"], "inv");
    let (_, list, _) = h
        .req(
            "GET",
            &format!("/v1.0/communications/calls/{a_id}/participants"),
            None,
        )
        .await;
    let alice = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["info"]["identity"]["user"]["id"] == ALICE)
        .cloned()
        .expect("Alice in roster");
    let alice_id = alice["id"].as_str().unwrap().to_string();
    assert_eq!(list["value"].as_array().unwrap().len(), 3);
    let (s, count, _) = h
        .req(
            "GET",
            &format!("/v1.0/communications/calls/{a_id}/participants/$count"),
            None,
        )
        .await;
    assert_eq!((s, count), (200, json!(3)));

    // The same identity cannot be invited twice.
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{a_id}/participants/invite"),
            Some(json!({"participants": [{"identity": {"user": {"id": ALICE}}}]})),
        )
        .await;
    assert_eq!(s, 409, "{v}");

    // Mute Alice: the other bot sees it in its roster too.
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{a_id}/participants/{alice_id}/mute"),
            Some(json!({"clientContext": "m"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "completed");
    h.until(&b_id, "Alice muted", |n| {
        n.resource.ends_with("/participants")
            && n.data
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["id"] == alice_id.as_str() && p["isMuted"] == true)
    })
    .await;

    // Hold music for one participant at a time.
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{a_id}/participants/{alice_id}/startHoldMusic"),
            Some(json!({"clientContext": "hold"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let hold_op = v["id"].as_str().unwrap().to_string();
    h.until(&a_id, "hold music started", |n| {
        n.resource.ends_with(&hold_op)
    })
    .await;
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{a_id}/participants/{b_me}/startHoldMusic"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 400, "a bot cannot be put on hold / only one at a time");
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{a_id}/participants/{alice_id}/stopHoldMusic"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(v["status"], "completed");

    // Remove Alice: her leg ends and she leaves both rosters.
    let (s, _, _) = h
        .req(
            "DELETE",
            &format!("/v1.0/communications/calls/{a_id}/participants/{alice_id}"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    h.until(&b_id, "Alice gone", |n| {
        n.resource.ends_with("/participants") && !roster_ids(n).contains(&alice_id)
    })
    .await;

    // Bot A leaves; bot B stays in the meeting.
    h.req(
        "DELETE",
        &format!("/v1.0/communications/calls/{a_id}"),
        None,
    )
    .await;
    h.until_state(&a_id, "terminated").await;
    let (s, v, _) = h
        .req_as(
            &t2,
            "GET",
            &format!("/v1.0/communications/calls/{b_id}"),
            None,
        )
        .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("established")));
}

#[tokio::test]
async fn rejoining_with_the_same_identity_replaces_the_old_call() {
    let h = Harness::start().await;
    let m = create_meeting(&h).await;
    let (_, a, _) = h
        .req(
            "POST",
            "/v1.0/communications/calls",
            Some(join_body(&h, &m, "id")),
        )
        .await;
    let a_id = a["id"].as_str().unwrap().to_string();
    h.until_state(&a_id, "established").await;
    // A crashed bot re-creates its call with the stored meeting info.
    let (s, b, _) = h
        .req(
            "POST",
            "/v1.0/communications/calls",
            Some(join_body(&h, &m, "id")),
        )
        .await;
    assert_eq!(s, 201);
    let b_id = b["id"].as_str().unwrap().to_string();
    let old = h.until_state(&a_id, "terminated").await;
    assert_eq!(old.last().unwrap().data["resultInfo"]["subcode"], 5000);
    h.until_state(&b_id, "established").await;
    // A distinct identity joins alongside.
    let mut body = join_body(&h, &m, "id");
    body["source"] = json!({"identity": {"applicationInstance": {"id": "instance-2", "displayName": "Second seat"}}});
    let (s, c, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201);
    let c_id = c["id"].as_str().unwrap().to_string();
    h.until_state(&c_id, "established").await;
    let (_, list, _) = h
        .req(
            "GET",
            &format!("/v1.0/communications/calls/{b_id}/participants"),
            None,
        )
        .await;
    assert_eq!(list["value"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn wrong_passcode_and_unknown_meeting_are_refused() {
    let h = Harness::start().await;
    let m = create_meeting(&h).await;
    let mut body = join_body(&h, &m, "id");
    body["meetingInfo"]["passcode"] = json!("000");
    let (s, v, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body.clone()))
        .await;
    assert_eq!(s, 403, "{v}");
    body["meetingInfo"]["joinMeetingId"] = json!("999999999999");
    let (s, _, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body))
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn group_call_with_routing_groups_self_mute_recording_and_gallery() {
    let h = Harness::start().await;
    let body = json!({
        "callbackUri": h.callback(), "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        "targets": [{"identity": {"user": {"id": ALICE}}}, {"identity": {"user": {"id": GINA}}}],
        "callOptions": {"@odata.type": "#microsoft.graph.outgoingCallOptions", "isDeltaRosterEnabled": true},
    });
    let (s, v, _) = h
        .req("POST", "/beta/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let me = v["myParticipantId"].as_str().unwrap().to_string();
    let rosters = h
        .until(&id, "both users joined", |n| {
            n.resource.ends_with("/participants")
                && n.data
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["info"]["identity"]["user"]["id"] == GINA)
        })
        .await;
    // Delta roster: each notification carries only what changed.
    assert!(
        rosters
            .iter()
            .filter(|n| n.resource.ends_with("/participants"))
            .all(|n| n.data.as_array().unwrap().len() == 1),
        "delta roster"
    );
    let (_, list, _) = h
        .req(
            "GET",
            &format!("/beta/communications/calls/{id}/participants"),
            None,
        )
        .await;
    let users: Vec<String> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"] != me.as_str())
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(users.len(), 2);

    let g = json!({"id": "whisper", "routingMode": "oneToOne", "sources": [me], "receivers": [users[0]]});
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/audioRoutingGroups"),
            Some(g.clone()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["@odata.type"], "#microsoft.graph.audioRoutingGroup");
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/audioRoutingGroups"),
            Some(g),
        )
        .await;
    assert_eq!(s, 409, "duplicate id");
    let bad = json!({"routingMode": "oneToOne", "sources": [me], "receivers": users});
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/audioRoutingGroups"),
            Some(bad),
        )
        .await;
    assert_eq!(s, 400, "oneToOne has one receiver: {v}");
    let (s, v, _) = h
        .req(
            "PATCH",
            &format!("/beta/communications/calls/{id}/audioRoutingGroups/whisper"),
            Some(json!({"routingMode": "multicast", "receivers": users})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["receivers"].as_array().unwrap().len(), 2);
    let (_, v, _) = h
        .req(
            "GET",
            &format!("/beta/communications/calls/{id}/audioRoutingGroups"),
            None,
        )
        .await;
    assert_eq!(v["value"].as_array().unwrap().len(), 1);
    let (s, _, _) = h
        .req(
            "DELETE",
            &format!("/beta/communications/calls/{id}/audioRoutingGroups/whisper"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _, _) = h
        .req(
            "GET",
            &format!("/beta/communications/calls/{id}/audioRoutingGroups/whisper"),
            None,
        )
        .await;
    assert_eq!(s, 404);

    let (s, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/mute"),
            Some(json!({"clientContext": "self"})),
        )
        .await;
    assert_eq!(
        (s, v["@odata.type"].as_str()),
        (200, Some("#microsoft.graph.muteParticipantOperation"))
    );
    h.until(&id, "bot muted", |n| {
        n.resource.ends_with("/participants")
            && n.data[0]["id"] == me.as_str()
            && n.data[0]["isMuted"] == true
    })
    .await;
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/unmute"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (s, v["@odata.type"].as_str()),
        (200, Some("#microsoft.graph.unmuteParticipantOperation"))
    );

    let (s, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/updateRecordingStatus"),
            Some(json!({"status": "recording", "clientContext": "rs"})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("completed")));
    h.until(&id, "recordingInfo", |n| {
        n.resource.ends_with("/participants")
            && n.data[0]["recordingInfo"]["recordingStatus"] == "recording"
    })
    .await;

    let (s, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/microsoft.graph.StartRecording"),
            Some(json!({"clientContext": "rec"})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (202, Some("running")));
    let rec_op = v["id"].as_str().unwrap().to_string();
    h.until(&id, "recording started", |n| {
        n.resource.ends_with(&rec_op) && n.data["status"] == "completed"
    })
    .await;
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/startRecording"),
            None,
        )
        .await;
    assert_eq!(s, 400, "already recording");
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/microsoft.graph.StopRecording"),
            None,
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (202, Some("completed")));

    let (s, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/startTranscription"),
            Some(json!({"language": "en-us"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    h.until(&id, "transcription active", |n| {
        n.data["transcription"]["state"] == "active"
    })
    .await;
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/startTranscription"),
            Some(json!({"language": "fr-fr"})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/stopTranscription"),
            Some(json!({"language": "en-us"})),
        )
        .await;
    assert_eq!(s, 202);

    let (s, v, headers) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/addLargeGalleryView"),
            Some(json!({"clientContext": "gallery"})),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (202, Some("running")));
    assert!(headers.contains_key("location"));
    let op = v["id"].as_str().unwrap().to_string();
    h.until(&id, "gallery", |n| n.resource.ends_with(&op)).await;
    let (_, v, _) = h
        .req(
            "GET",
            &format!("/beta/communications/calls/{id}/operations/{op}"),
            None,
        )
        .await;
    assert_eq!(v["status"], "completed");

    let (s, v, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/participants/muteAll"),
            Some(json!({"clientContext": "all"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["@odata.type"],
        "#microsoft.graph.muteParticipantsOperation"
    );
    assert_eq!(v["participants"].as_array().unwrap().len(), 2);

    let (s, v, _) = h
        .req(
            "GET",
            &format!("/beta/communications/calls/{id}/contentSharingSessions"),
            None,
        )
        .await;
    assert_eq!((s, v["value"].clone()), (200, json!([])));
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/beta/communications/calls/{id}/changeScreenSharingRole"),
            Some(json!({"role": "sharer"})),
        )
        .await;
    assert_eq!(s, 400, "service-hosted media cannot share screens");
}

#[tokio::test]
async fn simulated_user_joins_a_meeting_by_its_join_url_and_presses_keys() {
    let h = Harness::start().await;
    let m = create_meeting(&h).await;
    let (_, a, _) = h
        .req(
            "POST",
            "/v1.0/communications/calls",
            Some(join_body(&h, &m, "chat")),
        )
        .await;
    let a_id = a["id"].as_str().unwrap().to_string();
    h.until_state(&a_id, "established").await;
    h.req(
        "POST",
        &format!("/v1.0/communications/calls/{a_id}/subscribeToTone"),
        Some(json!({})),
    )
    .await;
    let script = json!({"dtmf": [{"atMs": 200, "digits": "7"}], "hangupAfterMs": 600});
    let (s, v) = h
        .admin(
            "POST",
            &format!("/users/{GINA}/join"),
            Some(json!({"joinWebUrl": m["joinWebUrl"], "script": script})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let joined = h
        .until(&a_id, "Gina in roster", |n| {
            n.resource.ends_with("/participants")
                && n.data
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["info"]["identity"]["user"]["id"] == GINA)
        })
        .await;
    assert!(!joined.is_empty());
    let tone = h
        .until(&a_id, "Gina's key", |n| n.data.get("toneInfo").is_some())
        .await;
    assert_eq!(tone.last().unwrap().data["toneInfo"]["tone"], "tone7");
    h.until(&a_id, "Gina left", |n| {
        n.resource.ends_with("/participants")
            && !n
                .data
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["info"]["identity"]["user"]["id"] == GINA)
    })
    .await;
    let (s, _) = h.admin("POST", &format!("/users/{GINA}/join"), Some(json!({"joinMeetingId": m["joinMeetingIdSettings"]["joinMeetingId"], "passcode": "nope"}))).await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn p2p_call_is_escalated_into_a_meeting_with_replaces_call_id() {
    let h = Harness::start().await;
    let p2p = h.call_user(ALICE).await;
    h.until_state(&p2p, "established").await;
    let m = create_meeting(&h).await;
    let (_, g, _) = h
        .req(
            "POST",
            "/v1.0/communications/calls",
            Some(join_body(&h, &m, "id")),
        )
        .await;
    let g_id = g["id"].as_str().unwrap().to_string();
    h.until_state(&g_id, "established").await;
    let body = json!({"participants": [{"identity": {"user": {"id": ALICE}}, "replacesCallId": p2p}, {"identity": {"user": {"id": GINA}}}]});
    let (s, op, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{g_id}/participants/invite"),
            Some(body),
        )
        .await;
    assert_eq!(s, 200, "{op}");
    assert_eq!(
        op["participants"].as_array().unwrap().len(),
        1,
        "with replacesCallId only the first participant is processed"
    );
    let op_id = op["id"].as_str().unwrap().to_string();
    let ended = h.until_state(&p2p, "terminated").await;
    assert_eq!(ended.last().unwrap().data["resultInfo"]["subcode"], 5000);
    let notes = h
        .until(&g_id, "invite done", |n| n.resource.ends_with(&op_id))
        .await;
    assert_eq!(notes.last().unwrap().data["status"], "completed");
    let (_, list, _) = h
        .req(
            "GET",
            &format!("/v1.0/communications/calls/{g_id}/participants"),
            None,
        )
        .await;
    assert!(
        list["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["info"]["identity"]["user"]["id"] == ALICE),
        "{list}"
    );
}

#[tokio::test]
async fn screen_shared_in_a_meeting_is_a_content_sharing_session() {
    let h = Harness::start().await;
    let m = create_meeting(&h).await;
    let mut body = join_body(&h, &m, "chat");
    body["callOptions"] = json!({"@odata.type": "#microsoft.graph.outgoingCallOptions", "isContentSharingNotificationEnabled": true});
    let (_, a, _) = h
        .req("POST", "/beta/communications/calls", Some(body))
        .await;
    let a_id = a["id"].as_str().unwrap().to_string();
    h.until_state(&a_id, "established").await;
    let script = json!({"shareScreenAtMs": 100, "stopSharingAtMs": 700});
    let (s, _) = h
        .admin(
            "POST",
            &format!("/users/{ALICE}/join"),
            Some(json!({"threadId": m["chatInfo"]["threadId"], "script": script})),
        )
        .await;
    assert_eq!(s, 201);
    let created = h
        .until(&a_id, "sharing created", |n| {
            n.resource.ends_with("/contentsharingsessions")
        })
        .await;
    let n = created.last().unwrap();
    assert_eq!(n.change, "created");
    let session = n.data[0]["id"].as_str().unwrap().to_string();
    let (s, v, _) = h
        .req(
            "GET",
            &format!("/beta/communications/calls/{a_id}/contentSharingSessions/{session}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["@odata.type"], "#microsoft.graph.contentSharingSession");
    let (_, list, _) = h
        .req(
            "GET",
            &format!("/beta/communications/calls/{a_id}/participants"),
            None,
        )
        .await;
    let alice = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["info"]["identity"]["user"]["id"] == ALICE)
        .unwrap()
        .clone();
    assert!(
        alice["mediaStreams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["mediaType"] == "videoBasedScreenSharing"),
        "{alice}"
    );
    let ended = h
        .until(&a_id, "sharing deleted", |n| {
            n.resource.ends_with("/contentsharingsessions")
        })
        .await;
    assert_eq!(ended.last().unwrap().change, "deleted");
    let (_, v, _) = h
        .req(
            "GET",
            &format!("/beta/communications/calls/{a_id}/contentSharingSessions"),
            None,
        )
        .await;
    assert_eq!(v["value"], json!([]));
}

#[tokio::test]
async fn app_hosted_bot_in_a_meeting_becomes_a_screen_sharer() {
    let h = Harness::start().await;
    let m = create_meeting(&h).await;
    let mut body = join_body(&h, &m, "id");
    body["mediaConfig"] = json!({"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": "{\"mpUri\":\"net.tcp://bot:18732/MediaProcessor\"}"});
    let (s, v, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v["mediaConfig"]["@odata.type"],
        "#microsoft.graph.appHostedMediaConfig"
    );
    let id = v["id"].as_str().unwrap().to_string();
    let me = v["myParticipantId"].as_str().unwrap().to_string();
    h.until_state(&id, "established").await;
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/changeScreenSharingRole"),
            Some(json!({"role": "sharer"})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    h.until(&id, "sharing stream", |n| {
        n.resource.ends_with("/participants")
            && n.data.as_array().unwrap().iter().any(|p| {
                p["id"] == me.as_str()
                    && p["mediaStreams"].as_array().unwrap().iter().any(|s| {
                        s["label"] == "applicationsharing-video" && s["direction"] == "sendOnly"
                    })
            })
    })
    .await;
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/changeScreenSharingRole"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 400, "role is required");
}

#[tokio::test]
async fn refused_and_unanswered_invitations_fail_the_invite_operation() {
    let h = Harness::start().await;
    let m = create_meeting(&h).await;
    let (_, a, _) = h
        .req(
            "POST",
            "/v1.0/communications/calls",
            Some(join_body(&h, &m, "chat")),
        )
        .await;
    let id = a["id"].as_str().unwrap().to_string();
    h.until_state(&id, "established").await;
    for (user, code) in [(BOB_BUSY, "486"), ("nobody-here", "480")] {
        let (s, op, _) = h.req("POST", &format!("/v1.0/communications/calls/{id}/participants/invite"), Some(json!({"participants": [{"identity": {"user": {"id": user}}}], "clientContext": user}))).await;
        assert_eq!(s, 200, "{op}");
        let op_id = op["id"].as_str().unwrap().to_string();
        let notes = h
            .until(&id, "invite failed", |n| n.resource.ends_with(&op_id))
            .await;
        let done = &notes.last().unwrap().data;
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["resultInfo"]["code"], 412);
        assert!(
            done["resultInfo"]["message"]
                .as_str()
                .unwrap()
                .contains(code),
            "{done}"
        );
        assert_eq!(done["clientContext"], user);
    }
}
