//! Application permissions (reference §5): their names, and whether a token's roles
//! satisfy what a request needs.

pub const INITIATE: &str = "Calls.Initiate.All";
pub const INITIATE_GROUP: &str = "Calls.InitiateGroupCall.All";
pub const JOIN_GROUP: &str = "Calls.JoinGroupCall.All";
pub const JOIN_GROUP_GUEST: &str = "Calls.JoinGroupCallAsGuest.All";
pub const ACCESS_MEDIA: &str = "Calls.AccessMedia.All";
pub const JOIN_GROUP_CHAT: &str = "Calls.JoinGroupCalls.Chat";
pub const ACCESS_MEDIA_CHAT: &str = "Calls.AccessMedia.Chat";

/// Docs spell some permissions two ways (`JoinGroupCalls.All`, `JoinGroupCallsasGuest.All`).
fn canonical(p: &str) -> String {
    p.to_ascii_lowercase()
        .replace("groupcalls.all", "groupcall.all")
        .replace("groupcallsasguest", "groupcallasguest")
}

/// Whether `roles` satisfy `needed` (each inner list is "any of"; every list must be
/// satisfied); if not, the message Graph's 403 carries, naming what is missing.
pub fn check(roles: &[String], needed: &[Vec<&'static str>]) -> Result<(), String> {
    let have: Vec<String> = roles.iter().map(|r| canonical(r)).collect();
    for any in needed {
        if !any.iter().any(|p| have.contains(&canonical(p))) {
            return Err(format!(
                "Missing role permissions on the request. API requires one of '{}'. Roles on the request '{}'.",
                any.join(", "),
                roles.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_accept_either_spelling_and_name_what_is_missing() {
        let roles = vec!["Calls.JoinGroupCalls.All".to_string()];
        assert!(check(&roles, &[vec![JOIN_GROUP]]).is_ok());
        let e = check(&roles, &[vec![INITIATE]]).unwrap_err();
        assert!(e.contains("Calls.Initiate.All"), "{e}");
    }
}
