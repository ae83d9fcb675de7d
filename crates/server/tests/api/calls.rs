//! Call lifecycles through the Graph API against simulated users.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn bot_calls_user_who_answers_then_hangs_up_the_call() {
    let h = Harness::start().await;
    let (s, v, headers) = h
        .req(
            "POST",
            "/v1.0/communications/calls",
            Some(p2p_body(&h.callback(), ALICE)),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    assert_eq!(v["state"], "establishing");
    assert_eq!(v["direction"], "outgoing");
    assert_eq!(v["@odata.type"], "#microsoft.graph.call");
    assert_eq!(
        v["mediaConfig"]["@odata.type"],
        "#microsoft.graph.serviceHostedMediaConfig"
    );
    assert_eq!(v["source"]["identity"]["application"]["id"], APP);
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("{}/v1.0/communications/calls/{id}", h.base)
    );
    assert!(
        v.get("ringingTimeoutInSeconds").is_none(),
        "beta-only keys stay out of v1.0"
    );

    let notes = h.until_state(id, "established").await;
    assert_eq!(states(&notes), ["establishing", "ringing", "established"]);
    assert_eq!(notes.last().unwrap().data["mediaState"]["audio"], "active");
    assert!(
        notes
            .iter()
            .all(|n| n.path == "/callback" && n.change == "updated")
    );

    let (s, v, _) = h
        .req("GET", &format!("/beta/communications/calls/{id}"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["state"], "established");
    assert_eq!(v["mediaState"]["audio"], "active");
    assert!(
        v.as_object()
            .unwrap()
            .contains_key("ringingTimeoutInSeconds")
    );

    let (s, _, _) = h
        .req("DELETE", &format!("/v1.0/communications/calls/{id}"), None)
        .await;
    assert_eq!(s, 204);
    let notes = h.until_state(id, "terminated").await;
    assert_eq!(states(&notes), ["terminating", "terminated"]);
    let last = notes.last().unwrap();
    assert_eq!(last.change, "deleted");
    assert_eq!(last.data["resultInfo"]["code"], 200);
    assert_eq!(last.data["resultInfo"]["subcode"], 5001);

    let (s, v, _) = h
        .req("GET", &format!("/v1.0/communications/calls/{id}"), None)
        .await;
    assert_eq!(s, 404);
    assert_eq!(v["error"]["code"], "8522");
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/keepAlive"),
            None,
        )
        .await;
    assert_eq!(s, 404, "keepAlive on an ended call is 404");
}

#[tokio::test]
async fn busy_declining_and_unknown_callees_end_the_call_with_the_right_result() {
    let h = Harness::start().await;
    for (user, code) in [(BOB_BUSY, 486), (DAVE_DECLINE, 603), ("no-such-user", 480)] {
        let id = h.call_user(user).await;
        let notes = h.until_state(&id, "terminated").await;
        let last = notes.last().unwrap();
        assert_eq!(last.change, "deleted");
        assert_eq!(
            last.data["resultInfo"]["code"], code,
            "{user}: {}",
            last.data
        );
    }
}

#[tokio::test]
async fn unanswered_call_times_out_after_ringing_timeout() {
    let h = Harness::start().await;
    let mut body = p2p_body(&h.callback(), CAROL_NO_ANSWER);
    body["ringingTimeoutInSeconds"] = json!(1);
    let (s, v, _) = h
        .req("POST", "/beta/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201);
    assert_eq!(v["ringingTimeoutInSeconds"], 1);
    let id = v["id"].as_str().unwrap();
    let notes = h.until_state(id, "terminated").await;
    assert_eq!(states(&notes), ["establishing", "ringing", "terminated"]);
    assert_eq!(notes.last().unwrap().data["resultInfo"]["code"], 408);
}

#[tokio::test]
async fn user_hanging_up_ends_the_bots_p2p_call() {
    let h = Harness::start().await;
    let id = h.call_user(FRANK_HANGS_UP).await;
    let notes = h.until_state(&id, "terminated").await;
    assert_eq!(
        states(&notes),
        ["establishing", "ringing", "established", "terminated"]
    );
    assert_eq!(notes.last().unwrap().data["resultInfo"]["subcode"], 4521);
}

#[tokio::test]
async fn incoming_call_is_notified_answered_and_connected() {
    let h = Harness::start().await;
    let (s, v) = h
        .admin(
            "POST",
            &format!("/users/{ALICE}/call"),
            Some(json!({"target": APP})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let call = v["callId"].as_str().unwrap().to_string();
    let leg = v["legId"].as_str().unwrap().to_string();
    let n = h.next_incoming().await;
    assert_eq!(
        n.path, "/incoming",
        "incoming calls go to the app's calling webhook"
    );
    assert_eq!(n.data["state"], "incoming");
    assert_eq!(n.data["direction"], "incoming");
    assert_eq!(n.data["source"]["identity"]["user"]["id"], ALICE);
    assert_eq!(n.data["targets"][0]["identity"]["application"]["id"], APP);
    assert_eq!(n.resource, format!("/communications/calls/{call}"));

    let answer = json!({"callbackUri": h.callback(), "acceptedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}});
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{call}/answer"),
            Some(answer.clone()),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let notes = h.until_state(&call, "established").await;
    assert_eq!(states(&notes), ["establishing", "established"]);
    assert!(
        notes.iter().all(|n| n.path == "/callback"),
        "after answer, notifications go to the new callbackUri"
    );

    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{call}/answer"),
            Some(answer),
        )
        .await;
    assert_eq!(s, 400, "answering twice is refused: {v}");
    assert_eq!(v["error"]["code"], "InvalidCallState");
    let log = h.leg_log(&leg).await;
    assert_eq!(log["state"], "connected");
}

#[tokio::test]
async fn rejected_incoming_call_is_refused_busy_to_the_caller() {
    let h = Harness::start().await;
    let (_, v) = h
        .admin(
            "POST",
            &format!("/users/{ALICE}/call"),
            Some(json!({"target": "sip:bot@contoso.example"})),
        )
        .await;
    let call = v["callId"].as_str().unwrap().to_string();
    let leg = v["legId"].as_str().unwrap().to_string();
    h.next_incoming().await;
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{call}/reject"),
            Some(json!({"reason": "Busy"})),
        )
        .await;
    assert_eq!(s, 202);
    let notes = h.until_state(&call, "terminated").await;
    assert_eq!(notes.last().unwrap().change, "deleted");
    let log = h.leg_log(&leg).await;
    assert!(
        log["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "rejected 486"),
        "{log}"
    );
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{call}/reject"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn incoming_call_not_answered_in_time_ends_with_408() {
    let h = Harness::start_with("answer_deadline_seconds = 1").await;
    let (_, v) = h
        .admin(
            "POST",
            &format!("/users/{ALICE}/call"),
            Some(json!({"target": APP})),
        )
        .await;
    let call = v["callId"].as_str().unwrap().to_string();
    let notes = h.until_state(&call, "terminated").await;
    let last = notes.last().unwrap();
    assert_eq!(last.data["resultInfo"]["code"], 408);
    assert_eq!(last.data["resultInfo"]["subcode"], 1106);
}

#[tokio::test]
async fn redirected_call_rings_the_new_target_and_ends_the_bots_leg() {
    let h = Harness::start().await;
    let (_, v) = h
        .admin(
            "POST",
            &format!("/users/{ERIN_DTMF}/call"),
            Some(json!({"target": APP})),
        )
        .await;
    let call = v["callId"].as_str().unwrap().to_string();
    h.next_incoming().await;
    let body = json!({"targets": [{"identity": {"user": {"id": ALICE}}}, {"identity": {"user": {"id": CAROL_NO_ANSWER}}}], "timeout": 20, "callbackUri": h.callback()});
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{call}/redirect"),
            Some(body),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let notes = h.until_state(&call, "terminated").await;
    assert_eq!(states(&notes), ["redirecting", "terminated"]);
    assert_eq!(
        notes.last().unwrap().data["answeredBy"]["identity"]["user"]["id"],
        ALICE
    );
}

#[tokio::test]
async fn blind_transfer_hands_the_user_to_the_target() {
    let h = Harness::start().await;
    let id = h.call_user(GINA).await;
    h.until_state(&id, "established").await;
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/transfer"),
            Some(json!({"transferTarget": {"identity": {"user": {"id": ALICE}}}})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let notes = h.until_state(&id, "terminated").await;
    assert_eq!(
        states(&notes),
        ["transferring", "transferAccepted", "terminated"]
    );
    let last = notes.last().unwrap();
    assert_eq!(last.data["resultInfo"]["subcode"], 7015);
    assert_eq!(
        last.data["resultInfo"]["message"],
        "GracefulTransferCompleted"
    );
}

#[tokio::test]
async fn failed_transfer_keeps_the_call_established() {
    let h = Harness::start().await;
    let id = h.call_user(GINA).await;
    h.until_state(&id, "established").await;
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/transfer"),
            Some(json!({"transferTarget": {"identity": {"user": {"id": BOB_BUSY}}}})),
        )
        .await;
    assert_eq!(s, 202);
    let notes = h
        .until(&id, "transfer failure", |n| {
            n.data.get("resultInfo").is_some()
        })
        .await;
    assert_eq!(states(&notes), ["transferring", "established"]);
    assert_eq!(notes.last().unwrap().data["resultInfo"]["code"], 500);
    let (_, v, _) = h
        .req("GET", &format!("/v1.0/communications/calls/{id}"), None)
        .await;
    assert_eq!(v["state"], "established");
}

#[tokio::test]
async fn consultative_transfer_joins_the_two_other_parties() {
    let h = Harness::start().await;
    let a = h.call_user(GINA).await;
    let b = h.call_user(ALICE).await;
    h.until_state(&a, "established").await;
    h.until_state(&b, "established").await;
    let body =
        json!({"transferTarget": {"identity": {"user": {"id": ALICE}}, "replacesCallId": b}});
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{a}/transfer"),
            Some(body),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let na = h.until_state(&a, "terminated").await;
    assert_eq!(
        states(&na),
        ["transferring", "transferAccepted", "terminated"]
    );
    let nb = h.until_state(&b, "terminated").await;
    assert_eq!(
        nb.last().unwrap().data["terminationReason"],
        "AppTransferred"
    );
}

#[tokio::test]
async fn bot_calling_another_bot_rings_its_webhook() {
    let h = Harness::start().await;
    let body = json!({
        "callbackUri": h.callback(),
        "targets": [{"identity": {"application": {"id": APP2}}}],
        "requestedModalities": ["audio"],
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
    });
    let (s, v, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let a = v["id"].as_str().unwrap().to_string();
    let incoming = h.next_incoming().await;
    assert_eq!(incoming.path, "/incoming2");
    assert_eq!(
        incoming.data["source"]["identity"]["application"]["id"],
        APP
    );
    let b = incoming.data["id"].as_str().unwrap().to_string();
    let t2 = h.app_token(TENANT, APP2, "secret-two").await;
    let answer = json!({"callbackUri": format!("{}/bot2", h.hooks.url), "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}});
    let (s, _, _) = h
        .req_as(
            &t2,
            "POST",
            &format!("/v1.0/communications/calls/{b}/answer"),
            Some(answer),
        )
        .await;
    assert_eq!(s, 202);
    h.until_state(&a, "established").await;
    h.until_state(&b, "established").await;
    // Tones the first bot sends are heard by the second.
    let (s, _, _) = h
        .req_as(
            &t2,
            "POST",
            &format!("/v1.0/communications/calls/{b}/subscribeToTone"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{a}/sendDtmfTones"),
            Some(json!({"tones": ["tone4", "pound"], "delayBetweenTonesMs": 50})),
        )
        .await;
    assert_eq!(s, 200);
    let notes = h
        .until(&b, "second tone", |n| n.data["toneInfo"]["sequenceId"] == 2)
        .await;
    let tones: Vec<_> = notes
        .iter()
        .filter_map(|n| n.data.get("toneInfo"))
        .map(|t| t["tone"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tones, ["tone4", "pound"]);
    h.req("DELETE", &format!("/v1.0/communications/calls/{a}"), None)
        .await;
    h.until_state(&b, "terminated").await;
}

#[tokio::test]
async fn user_putting_the_call_on_hold_shows_as_hold_then_established() {
    let h = Harness::start().await;
    let mut body = p2p_body(&h.callback(), ALICE);
    body["targets"][0]["ringside"] = json!({"holdAtMs": 200, "resumeAtMs": 400});
    let (s, v, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let notes = h
        .until(&id, "resumed", |n| {
            n.state() == Some("established") && n.data.get("mediaState").is_none()
        })
        .await;
    assert_eq!(
        states(&notes),
        [
            "establishing",
            "ringing",
            "established",
            "hold",
            "established"
        ]
    );
}

#[tokio::test]
async fn keys_reach_the_bot_a_user_was_transferred_to_and_back() {
    let h = Harness::start().await;
    let mut body = p2p_body(&h.callback(), GINA);
    body["targets"][0]["ringside"] = json!({"dtmf": [{"atMs": 1500, "digits": "9"}]});
    let (_, v, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body))
        .await;
    let a = v["id"].as_str().unwrap().to_string();
    h.until_state(&a, "established").await;
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{a}/transfer"),
            Some(json!({"transferTarget": {"identity": {"application": {"id": APP2}}}})),
        )
        .await;
    assert_eq!(s, 202);
    let incoming = h.next_incoming().await;
    let b = incoming.data["id"].as_str().unwrap().to_string();
    let t2 = h.app_token(TENANT, APP2, "secret-two").await;
    let answer = json!({"callbackUri": format!("{}/bot2", h.hooks.url), "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}});
    h.req_as(
        &t2,
        "POST",
        &format!("/v1.0/communications/calls/{b}/answer"),
        Some(answer),
    )
    .await;
    h.until_state(&a, "terminated").await;
    h.until_state(&b, "established").await;
    h.req_as(
        &t2,
        "POST",
        &format!("/v1.0/communications/calls/{b}/subscribeToTone"),
        Some(json!({})),
    )
    .await;
    let notes = h
        .until(&b, "Gina's key", |n| n.data.get("toneInfo").is_some())
        .await;
    assert_eq!(notes.last().unwrap().data["toneInfo"]["tone"], "tone9");
    let (s, _, _) = h
        .req_as(
            &t2,
            "POST",
            &format!("/v1.0/communications/calls/{b}/sendDtmfTones"),
            Some(json!({"tones": ["tone1"]})),
        )
        .await;
    assert_eq!(s, 200);
    eventually("Gina hears tone1", || async {
        let (_, legs) = h.admin("GET", &format!("/legs?user={GINA}"), None).await;
        legs["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["tonesHeard"] == "1")
    })
    .await;
}

#[tokio::test]
async fn the_operator_sees_where_the_driver_spends_its_time() {
    let h = Harness::start().await;
    let id = h.call_user(ALICE).await;
    h.until_state(&id, "established").await;

    let (s, d) = h.admin("GET", "/driver", None).await;
    assert_eq!(s, 200, "{d}");
    let batches = d["batches"].as_u64().unwrap();
    assert!(batches >= 1, "{d}");
    assert!(
        d["messages"].as_u64().unwrap() >= 1,
        "the create request at least: {d}"
    );
    let by_duration: u64 = d["batchesByDuration"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(by_duration, batches, "every batch is in one bucket: {d}");
    for k in ["engineMs", "maxEngineMs", "commitMs", "maxCommitMs"] {
        assert!(d[k].as_f64().unwrap() >= 0.0, "{k}: {d}");
    }
    assert!(d["maxCommitMs"].as_f64() <= d["commitMs"].as_f64(), "{d}");
    // The allocator's own count, to tell ringside's state from the allocator's (jemalloc).
    let heap = &d["heap"];
    let in_use = heap["inUseBytes"].as_u64().unwrap();
    assert!(in_use > 0, "{d}");
    assert!(heap["heldBytes"].as_u64().unwrap() >= in_use, "{d}");

    let (s, _, _) = h.req("GET", "/admin/driver", None).await;
    assert_eq!(s, 401, "an app's token is not the admin's");
}
