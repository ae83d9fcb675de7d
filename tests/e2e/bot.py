"""What a Graph calling bot built on msgraph-beta-sdk does, as small reusable steps.

Bodies are built with the SDK's own models, exactly as a bot would; nothing is sent as
hand-written JSON here.
"""
from __future__ import annotations

from typing import Optional

from msgraph_beta import GraphServiceClient
from msgraph_beta.generated.models.app_hosted_media_config import AppHostedMediaConfig
from msgraph_beta.generated.models.call import Call
from msgraph_beta.generated.models.chat_info import ChatInfo
from msgraph_beta.generated.models.identity import Identity
from msgraph_beta.generated.models.identity_set import IdentitySet
from msgraph_beta.generated.models.invitation_participant_info import InvitationParticipantInfo
from msgraph_beta.generated.models.join_meeting_id_meeting_info import JoinMeetingIdMeetingInfo
from msgraph_beta.generated.models.media_info import MediaInfo
from msgraph_beta.generated.models.media_prompt import MediaPrompt
from msgraph_beta.generated.models.modality import Modality
from msgraph_beta.generated.models.online_meeting import OnlineMeeting
from msgraph_beta.generated.models.organizer_meeting_info import OrganizerMeetingInfo
from msgraph_beta.generated.models.service_hosted_media_config import ServiceHostedMediaConfig
from msgraph_beta.generated.communications.calls.item.answer.answer_post_request_body import AnswerPostRequestBody
from msgraph_beta.generated.communications.calls.item.participants.invite.invite_post_request_body import InvitePostRequestBody

from support import TENANT, Hooks, Watch, user_in


def user_identity(user_id: str, name: Optional[str] = None) -> IdentitySet:
    return IdentitySet(user=Identity(id=user_id, display_name=name, additional_data={"tenantId": TENANT}))


def user_target(user_id: str, name: Optional[str] = None, script: Optional[dict] = None) -> InvitationParticipantInfo:
    """A target user; `script` is ringside's per-call behaviour override (same keys as config)."""
    extra = {"ringside": script} if script else {}
    return InvitationParticipantInfo(identity=user_identity(user_id, name), additional_data=extra)


def service_media(prefetch: Optional[list[str]] = None) -> ServiceHostedMediaConfig:
    return ServiceHostedMediaConfig(pre_fetch_media=[MediaInfo(uri=u, resource_id=u.rsplit("/", 1)[-1]) for u in prefetch or []])


def app_media() -> AppHostedMediaConfig:
    return AppHostedMediaConfig(blob='{"mpUri":"net.tcp://127.0.0.1:8445/MediaProcessor"}')


def p2p_call(callback: str, user_id: str, script: Optional[dict] = None, media=None, name: str = "Target") -> Call:
    return Call(
        callback_uri=callback,
        targets=[user_target(user_id, name, script)],
        requested_modalities=[Modality.Audio],
        media_config=media or service_media(),
        tenant_id=TENANT,
    )


def prompt(url: str, resource_id: Optional[str] = None) -> MediaPrompt:
    return MediaPrompt(media_info=MediaInfo(uri=url, resource_id=resource_id))


async def call_user(beta: GraphServiceClient, hooks: Hooks, callback: str, user_id: str, script: Optional[dict] = None, media=None) -> tuple[Call, Watch]:
    """Place a P2P call and wait until it is established."""
    call = await beta.communications.calls.post(p2p_call(callback, user_id, script, media))
    assert call is not None and call.id
    w = hooks.watch(call.id)
    await w.until_state("established")
    return call, w


async def answer_incoming(beta: GraphServiceClient, hooks: Hooks, call_id: str, callback: str, media=None) -> Watch:
    """Wait for the incoming-call notification, answer it, wait until established."""
    w = hooks.watch(call_id)
    await w.until(lambda n: n.change == "created", "incoming call")
    await beta.communications.calls.by_call_id(call_id).answer.post(
        AnswerPostRequestBody(callback_uri=callback, accepted_modalities=[Modality.Audio], media_config=media or service_media())
    )
    await w.until_state("established")
    return w


async def create_meeting(beta: GraphServiceClient, subject: str) -> OnlineMeeting:
    m = await beta.communications.online_meetings.post(OnlineMeeting(subject=subject))
    assert m is not None and m.id
    return m


def join_body(callback: str, meeting: OnlineMeeting, media=None, by_id: bool = False, name: Optional[str] = None) -> Call:
    """Join an online meeting: chatInfo + organizerMeetingInfo, or joinMeetingIdMeetingInfo."""
    if by_id:
        s = meeting.join_meeting_id_settings
        info = JoinMeetingIdMeetingInfo(join_meeting_id=s.join_meeting_id, passcode=s.passcode)
        chat = None
    else:
        organizer = meeting.participants.organizer.identity
        info = OrganizerMeetingInfo(organizer=organizer, additional_data={"allowConversationWithoutHost": True})
        chat = ChatInfo(thread_id=meeting.chat_info.thread_id, message_id="0")
    return Call(
        callback_uri=callback,
        requested_modalities=[Modality.Audio],
        media_config=media or service_media(),
        chat_info=chat,
        meeting_info=info,
        tenant_id=TENANT,
        subject=name,
    )


async def join_meeting(beta: GraphServiceClient, hooks: Hooks, callback: str, meeting: OnlineMeeting, media=None, by_id: bool = False) -> tuple[Call, Watch]:
    call = await beta.communications.calls.post(join_body(callback, meeting, media, by_id))
    assert call is not None and call.id
    w = hooks.watch(call.id)
    await w.until_state("established")
    return call, w


async def meeting_with_user(beta: GraphServiceClient, hooks: Hooks, callback: str, user_id: str, media=None, script: Optional[dict] = None) -> tuple[Call, Watch, str]:
    """A bot in a fresh meeting with one invited simulated user who has joined.

    Returns the bot's call, its watch (positioned after the join), and the user's participant id.
    """
    meeting = await create_meeting(beta, "e2e meeting")
    call, w = await join_meeting(beta, hooks, callback, meeting, media)
    op = await beta.communications.calls.by_call_id(call.id).participants.invite.post(
        InvitePostRequestBody(participants=[user_target(user_id, "Invitee", script)], client_context="invite")
    )
    await w.seen(lambda n: n.is_operation and op.id in n.resource, "invite completed")
    n = await w.seen(lambda n: n.is_roster and user_in(n.data, user_id) is not None, "invitee in roster")
    return call, w, user_in(n.data, user_id)["id"]
