//! Bad input gets a Graph error that names the problem, and changes nothing.

use crate::common::*;
use serde_json::{Value, json};

fn assert_envelope(status: u16, v: &Value, headers: &reqwest::header::HeaderMap, want: u16) {
    assert_eq!(status, want, "{v}");
    let e = &v["error"];
    assert!(e["code"].is_string(), "{v}");
    assert!(!e["message"].as_str().unwrap().is_empty());
    assert!(e["innerError"]["request-id"].is_string());
    assert!(e["innerError"]["date"].is_string());
    assert_eq!(
        headers["request-id"].to_str().unwrap(),
        e["innerError"]["request-id"].as_str().unwrap()
    );
}

async fn call_count(h: &Harness) -> usize {
    let (_, v, _) = h.req("GET", "/v1.0/communications/calls", None).await;
    v["value"].as_array().unwrap().len()
}

#[tokio::test]
async fn malformed_and_incomplete_create_requests_are_refused_with_the_reason() {
    let h = Harness::start().await;
    let t = h.token().await;
    let raw = h
        .client
        .post(format!("{}/v1.0/communications/calls", h.base))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{\"callbackUri\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let v: Value = raw.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    let good = p2p_body(&h.callback(), ALICE);
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut b = good.clone();
                b.as_object_mut().unwrap().remove("callbackUri");
                b
            },
            "callbackUri",
        ),
        (
            {
                let mut b = good.clone();
                b["callbackUri"] = json!("not a url");
                b
            },
            "callbackUri",
        ),
        (
            {
                let mut b = good.clone();
                b.as_object_mut().unwrap().remove("mediaConfig");
                b
            },
            "mediaConfig",
        ),
        (
            {
                let mut b = good.clone();
                b["mediaConfig"] = json!({"preFetchMedia": []});
                b
            },
            "@odata.type",
        ),
        (
            {
                let mut b = good.clone();
                b["mediaConfig"] = json!({"@odata.type": "#microsoft.graph.fancyMediaConfig"});
                b
            },
            "fancymediaconfig",
        ),
        (
            {
                let mut b = good.clone();
                b["requestedModalities"] = json!([]);
                b
            },
            "requestedModalities",
        ),
        (
            {
                let mut b = good.clone();
                b["requestedModalities"] = json!(["smell"]);
                b
            },
            "requestedModalities",
        ),
        (
            {
                let mut b = good.clone();
                b.as_object_mut().unwrap().remove("targets");
                b
            },
            "targets",
        ),
        (
            {
                let mut b = good.clone();
                b["targets"] = json!([{"identity": {}}]);
                b
            },
            "targets[0]",
        ),
        (
            {
                let mut b = good.clone();
                b["targets"] = json!("alice");
                b
            },
            "targets",
        ),
        (
            {
                let mut b = good.clone();
                b["ringingTimeoutInSeconds"] = json!(116);
                b
            },
            "ringingTimeoutInSeconds",
        ),
        (
            {
                let mut b = good.clone();
                b["ringingTimeoutInSeconds"] = json!("abc");
                b
            },
            "ringingTimeoutInSeconds",
        ),
        (
            {
                let mut b = good.clone();
                b["targets"] = json!(
                    (0..6)
                        .map(|i| json!({"identity": {"user": {"id": format!("u{i}")}}}))
                        .collect::<Vec<_>>()
                );
                b
            },
            "at most 5",
        ),
        (
            {
                let mut b = good.clone();
                b["meetingInfo"] =
                    json!({"@odata.type": "#microsoft.graph.tokenMeetingInfo", "token": "x"});
                b
            },
            "targets cannot be combined",
        ),
        (json!([1, 2]), "Invalid request body"),
    ];
    for (body, needle) in cases {
        let (s, v, headers) = h
            .req("POST", "/v1.0/communications/calls", Some(body.clone()))
            .await;
        assert_envelope(s, &v, &headers, 400);
        let msg = v["error"]["message"].as_str().unwrap().to_ascii_lowercase();
        assert!(
            msg.contains(&needle.to_ascii_lowercase()),
            "message for {body} should mention {needle}: {msg}"
        );
    }
    assert_eq!(call_count(&h).await, 0, "nothing was created");
}

#[tokio::test]
async fn lenient_input_is_accepted_as_graph_clients_send_it() {
    let h = Harness::start().await;
    // No @odata.type on the call or identities, numbers as strings, PascalCase enums, unknown
    // properties, duplicate slashes and the legacy /app/calls root.
    let body = json!({
        "callbackUri": h.callback(),
        "targets": [{"identity": {"user": {"id": ALICE, "tenantId": TENANT, "identityProvider": "AAD"}}, "languageId": "en-US"}],
        "requestedModalities": ["Audio"],
        "mediaConfig": {"@odata.type": "microsoft.graph.ServiceHostedMediaConfig"},
        "ringingTimeoutInSeconds": "30",
        "direction": "outgoing",
        "customThing": {"kept": true},
    });
    let t = h.token().await;
    let (s, v, _) = h.req_as(&t, "POST", "/beta//app//calls", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["ringingTimeoutInSeconds"], 30);
    assert_eq!(
        v["customThing"],
        json!({"kept": true}),
        "unknown properties of open types are echoed"
    );
    assert_eq!(
        v["targets"][0]["identity"]["user"]["identityProvider"],
        "AAD"
    );
    assert_eq!(v["targets"][0]["languageId"], "en-US");
    assert_eq!(v["requestedModalities"], json!(["audio"]));
    let (s, _, _) = h
        .req(
            "GET",
            &format!("/v1.0//communications//calls/{}", v["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn actions_in_the_wrong_state_or_call_kind_change_nothing() {
    let h = Harness::start().await;
    let id = h.call_user(ALICE).await;
    h.until_state(&id, "established").await;
    let cases = [
        (
            "answer",
            json!({"mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}}),
            "InvalidCallState",
        ),
        ("reject", json!({"reason": "busy"}), "InvalidCallState"),
        (
            "redirect",
            json!({"targets": [{"identity": {"user": {"id": GINA}}}]}),
            "InvalidCallState",
        ),
        ("mute", json!({}), "BadRequest"),
        ("participants/muteAll", json!({}), "BadRequest"),
        (
            "changeScreenSharingRole",
            json!({"role": "sharer"}),
            "BadRequest",
        ),
    ];
    for (action, body, code) in cases {
        let (s, v, headers) = h
            .req(
                "POST",
                &format!("/v1.0/communications/calls/{id}/{action}"),
                Some(body),
            )
            .await;
        assert_envelope(s, &v, &headers, 400);
        assert_eq!(v["error"]["code"], code, "{action}: {v}");
    }
    let (_, v, _) = h
        .req("GET", &format!("/v1.0/communications/calls/{id}"), None)
        .await;
    assert_eq!(v["state"], "established");

    // IVR actions on an app-hosted call.
    let mut body = p2p_body(&h.callback(), GINA);
    body["mediaConfig"] =
        json!({"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": "{}"});
    let (_, v, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body))
        .await;
    let app_hosted = v["id"].as_str().unwrap().to_string();
    h.until_state(&app_hosted, "established").await;
    let prompt = json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": "https://example.com/a.wav"}}]});
    let (s, v, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{app_hosted}/playPrompt"),
            Some(prompt),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("serviceHostedMediaConfig")
    );
    let (s, _, _) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{app_hosted}/subscribeToTone"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn values_over_the_limits_are_refused() {
    let h = Harness::start().await;
    let id = h.call_user(ALICE).await;
    h.until_state(&id, "established").await;
    let long = "x".repeat(257);
    let p = json!({"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": "https://example.com/a.wav"}});
    let cases = [
        (
            "playPrompt",
            json!({"prompts": [p], "clientContext": long}),
            "clientContext",
        ),
        (
            "playPrompt",
            json!({"prompts": vec![p.clone(); 21]}),
            "at most 20",
        ),
        ("playPrompt", json!({"prompts": []}), "prompts"),
        (
            "playPrompt",
            json!({"prompts": [{"@odata.type": "#microsoft.graph.textPrompt"}]}),
            "mediaPrompt",
        ),
        (
            "playPrompt",
            json!({"prompts": [{"mediaInfo": {"uri": "ftp://x/a.wav"}}]}),
            "http",
        ),
        ("recordResponse", json!({"prompts": [p, p]}), "at most 1"),
        (
            "recordResponse",
            json!({"maxRecordDurationInSeconds": 121}),
            "maxRecordDurationInSeconds",
        ),
        (
            "recordResponse",
            json!({"initialSilenceTimeoutInSeconds": 0}),
            "initialSilenceTimeoutInSeconds",
        ),
        (
            "recordResponse",
            json!({"stopTones": ["#", "x"]}),
            "stopTones",
        ),
        (
            "sendDtmfTones",
            json!({"tones": ["tone1", "tone99"]}),
            "tone",
        ),
        ("sendDtmfTones", json!({"tones": []}), "tones"),
        (
            "subscribeToTone",
            json!({"clientContext": {"a": 1}}),
            "clientContext",
        ),
        ("transfer", json!({}), "transferTarget"),
        ("updateRecordingStatus", json!({}), "status"),
        (
            "updateRecordingStatus",
            json!({"status": "paused"}),
            "status",
        ),
    ];
    for (action, body, needle) in cases {
        let (s, v, headers) = h
            .req(
                "POST",
                &format!("/beta/communications/calls/{id}/{action}"),
                Some(body.clone()),
            )
            .await;
        assert_envelope(s, &v, &headers, 400);
        let msg = v["error"]["message"].as_str().unwrap().to_ascii_lowercase();
        assert!(
            msg.contains(&needle.to_ascii_lowercase()),
            "{action} {body}: {msg}"
        );
    }
    let (_, ops, _) = h
        .req(
            "GET",
            &format!("/beta/communications/calls/{id}/operations"),
            None,
        )
        .await;
    assert_eq!(
        ops["value"].as_array().unwrap().len(),
        0,
        "no operation was created"
    );
}

#[tokio::test]
async fn unknown_ids_and_routes_are_404_and_wrong_methods_405() {
    let h = Harness::start().await;
    let (s, v, headers) = h
        .req("GET", "/v1.0/communications/calls/does-not-exist", None)
        .await;
    assert_envelope(s, &v, &headers, 404);
    assert_eq!(v["error"]["code"], "8522");
    let id = h.call_user(ALICE).await;
    h.until_state(&id, "established").await;
    for path in [
        "participants/nope",
        "operations/nope",
        "audioRoutingGroups/nope",
        "contentSharingSessions/nope",
    ] {
        let (s, v, headers) = h
            .req(
                "GET",
                &format!("/v1.0/communications/calls/{id}/{path}"),
                None,
            )
            .await;
        assert_envelope(s, &v, &headers, 404);
    }
    let (s, v, headers) = h
        .req(
            "POST",
            &format!("/v1.0/communications/calls/{id}/fly"),
            Some(json!({})),
        )
        .await;
    assert_envelope(s, &v, &headers, 404);
    let (s, v, headers) = h
        .req(
            "PUT",
            &format!("/v1.0/communications/calls/{id}"),
            Some(json!({})),
        )
        .await;
    assert_envelope(s, &v, &headers, 405);
    let (s, v, headers) = h.req("GET", "/v2.0/communications/calls", None).await;
    assert_envelope(s, &v, &headers, 404);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let h = Harness::start_with("max_body_bytes = 2048").await;
    let mut body = p2p_body(&h.callback(), ALICE);
    body["subject"] = json!("s".repeat(4000));
    let (s, v, headers) = h
        .req("POST", "/v1.0/communications/calls", Some(body))
        .await;
    assert_envelope(s, &v, &headers, 413);
    assert_eq!(call_count(&h).await, 0);
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let h = Harness::start().await;
    let r = h.token_for(TENANT, APP, "wrong").await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_client");
    let r = h.token_for(TENANT2, APP, SECRET).await;
    assert_eq!(r.status(), 401, "an app gets tokens only in its own tenant");
    for bad in [
        "",
        "garbage",
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ0aWQiOiJ0In0.",
    ] {
        let (s, v, headers) = h
            .req_as(bad, "GET", "/v1.0/communications/calls", None)
            .await;
        assert_envelope(s, &v, &headers, 401);
        assert_eq!(v["error"]["code"], "InvalidAuthenticationToken");
    }
    let resp = h
        .client
        .get(format!("{}/v1.0/communications/calls", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn apps_see_only_their_own_calls() {
    let h = Harness::start().await;
    let id = h.call_user(ALICE).await;
    h.until_state(&id, "established").await;
    let same_tenant = h.app_token(TENANT, APP2, "secret-two").await;
    let other_tenant = h.app_token(TENANT2, APP3, "secret-three").await;
    for t in [&same_tenant, &other_tenant] {
        // Every route of reference §0 that names a call.
        let group = json!({"routingMode": "multicast", "sources": ["a"], "receivers": ["b"]});
        let routes: Vec<(&str, String, Value)> = vec![
            ("GET", String::new(), json!({})),
            ("DELETE", String::new(), json!({})),
            ("GET", "/participants".into(), json!({})),
            ("GET", "/participants/$count".into(), json!({})),
            ("GET", "/participants/p1".into(), json!({})),
            ("DELETE", "/participants/p1".into(), json!({})),
            (
                "POST",
                "/participants/invite".into(),
                json!({"participants": [{"identity": {"user": {"id": GINA}}}]}),
            ),
            ("POST", "/participants/muteAll".into(), json!({})),
            ("POST", "/participants/p1/mute".into(), json!({})),
            ("POST", "/participants/p1/startHoldMusic".into(), json!({})),
            ("POST", "/participants/p1/stopHoldMusic".into(), json!({})),
            ("GET", "/audioRoutingGroups".into(), json!({})),
            ("POST", "/audioRoutingGroups".into(), group.clone()),
            ("GET", "/audioRoutingGroups/g1".into(), json!({})),
            ("PATCH", "/audioRoutingGroups/g1".into(), json!({})),
            ("DELETE", "/audioRoutingGroups/g1".into(), json!({})),
            ("GET", "/operations".into(), json!({})),
            ("GET", "/operations/o1".into(), json!({})),
            ("GET", "/contentSharingSessions".into(), json!({})),
            ("GET", "/contentSharingSessions/s1".into(), json!({})),
            ("POST", "/keepAlive".into(), json!({})),
            (
                "POST",
                "/answer".into(),
                json!({"mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}}),
            ),
            ("POST", "/reject".into(), json!({})),
            (
                "POST",
                "/redirect".into(),
                json!({"targets": [{"identity": {"user": {"id": GINA}}}]}),
            ),
            (
                "POST",
                "/transfer".into(),
                json!({"transferTarget": {"identity": {"user": {"id": GINA}}}}),
            ),
            ("POST", "/playPrompt".into(), json!({})),
            ("POST", "/recordResponse".into(), json!({})),
            ("POST", "/cancelMediaProcessing".into(), json!({})),
            ("POST", "/subscribeToTone".into(), json!({})),
            ("POST", "/sendDtmfTones".into(), json!({})),
            ("POST", "/mute".into(), json!({})),
            ("POST", "/unmute".into(), json!({})),
            (
                "POST",
                "/changeScreenSharingRole".into(),
                json!({"role": "viewer"}),
            ),
            (
                "POST",
                "/updateRecordingStatus".into(),
                json!({"status": "recording"}),
            ),
            ("POST", "/microsoft.graph.StartRecording".into(), json!({})),
            ("POST", "/microsoft.graph.StopRecording".into(), json!({})),
            (
                "POST",
                "/microsoft.graph.StartTranscription".into(),
                json!({}),
            ),
            (
                "POST",
                "/microsoft.graph.StopTranscription".into(),
                json!({}),
            ),
            ("POST", "/addLargeGalleryView".into(), json!({})),
        ];
        for (m, p, body) in routes {
            let (s, v, _) = h
                .req_as(
                    t,
                    m,
                    &format!("/v1.0/communications/calls/{id}{p}"),
                    Some(body),
                )
                .await;
            if std::ptr::eq(t, &other_tenant) {
                assert_eq!(s, 403, "{m} {p}: {v}");
                assert_eq!(
                    v["error"]["message"],
                    "request authorization tenant mismatch"
                );
            } else {
                assert_eq!(s, 404, "{m} {p}: {v}");
            }
        }
        let (_, v, _) = h.req_as(t, "GET", "/v1.0/communications/calls", None).await;
        assert_eq!(v["value"].as_array().unwrap().len(), 0);
    }
    let (s, v, _) = h
        .req(
            "POST",
            "/v1.0/communications/calls",
            Some({
                let mut b = p2p_body(&h.callback(), GINA);
                b["tenantId"] = json!(TENANT2);
                b
            }),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        v["error"]["message"],
        "request authorization tenant mismatch"
    );
    let (_, v, _) = h
        .req("GET", &format!("/v1.0/communications/calls/{id}"), None)
        .await;
    assert_eq!(v["state"], "established", "the owner's call is untouched");
}

#[tokio::test]
async fn log_teleconference_device_quality_needs_a_user_agent_and_is_stored() {
    let h = Harness::start().await;
    let q = json!({"quality": {"@odata.type": "#microsoft.graph.teleconferenceDeviceQuality", "callChainId": "c", "participantId": "p", "mediaLegId": "m", "deviceName": "VTC", "deviceDescription": "Room 1", "mediaQualityList": [{"@odata.type": "#microsoft.graph.teleconferenceDeviceAudioQuality", "channelIndex": 1, "mediaDuration": "PT20M"}]}});
    let t = h.token().await;
    let url = format!(
        "{}/v1.0/communications/calls/logTeleconferenceDeviceQuality",
        h.base
    );
    let r = h
        .client
        .post(&url)
        .bearer_auth(&t)
        .header("user-agent", "nonsense")
        .json(&q)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .client
        .post(&url)
        .bearer_auth(&t)
        .header("user-agent", "VtcBot/1.2")
        .json(&json!({"quality": {"deviceName": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = h
        .client
        .post(&url)
        .bearer_auth(&t)
        .header("user-agent", "VtcBot/1.2")
        .json(&q)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, v) = h
        .admin("GET", &format!("/device-quality?tenant={TENANT}"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["value"][0]["quality"]["deviceName"], "VTC");
    assert_eq!(v["value"][0]["appId"], APP);
}

#[tokio::test]
async fn admin_api_needs_the_admin_token_not_an_app_token() {
    let h = Harness::start().await;
    let t = h.token().await;
    let (s, _, _) = h.req_as(&t, "GET", "/admin/directory", None).await;
    assert_eq!(s, 401);
    let (s, v) = h.admin("GET", "/directory", None).await;
    assert_eq!(s, 200);
    assert!(
        v["apps"][0].get("secret").is_none(),
        "secrets are not listed"
    );
    let (s, v) = h
        .admin(
            "POST",
            "/users",
            Some(
                json!({"tenant": TENANT, "displayName": "Zed", "behaviour": {"action": "explode"}}),
            ),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = h
        .admin(
            "POST",
            "/users",
            Some(json!({"tenant": TENANT, "displayName": "Zed", "behaviour": {"action": "busy"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let zed = v["id"].as_str().unwrap().to_string();
    let id = h.call_user(&zed).await;
    let notes = h.until_state(&id, "terminated").await;
    assert_eq!(notes.last().unwrap().data["resultInfo"]["code"], 486);
    let saved = std::fs::read_to_string(h.dir.join("ringside.toml")).unwrap();
    assert!(
        saved.contains(&zed),
        "admin changes are written to the config file"
    );
}

#[tokio::test]
async fn phone_targets_need_an_application_instance_and_a_trunk() {
    let h = Harness::start().await;
    let mut body = p2p_body(&h.callback(), ALICE);
    body["targets"] = json!([{"identity": {"phone": {"id": "+15550123"}}}]);
    let (s, v, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body.clone()))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("applicationInstance")
    );
    // Another app's resource account, or one that does not exist: refused.
    body["source"] = json!({"identity": {"applicationInstance": {"id": "ri-other-app"}}});
    let (s, v, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body.clone()))
        .await;
    assert_eq!(s, 403, "{v}");
    body["source"] = json!({"identity": {"applicationInstance": {"id": "no-such-instance"}}});
    let (s, v, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body.clone()))
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a resource account")
    );
    body["source"] =
        json!({"identity": {"applicationInstance": {"id": "ri-1", "displayName": "Main line"}}});
    let (s, v, _) = h
        .req("POST", "/v1.0/communications/calls", Some(body))
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let notes = h.until_state(&id, "terminated").await;
    let r = &notes.last().unwrap().data["resultInfo"];
    assert_eq!(r["code"], 480);
    assert!(r["message"].as_str().unwrap().contains("trunk"), "{r}");
}
