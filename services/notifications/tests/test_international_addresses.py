"""Internationalised addresses (identity keeps them in Unicode): an IDN domain goes out in its
ASCII form, a Unicode local part with SMTPUTF8 where the server offers it, and fails at once,
with a reason that names no address, where it does not."""

from __future__ import annotations

import uuid

from shared.contracts.identity import AccountRegistered
from shared.testing import SmtpServer

from .conftest import StartService, Utf8SmtpServer


def sign_up(address: str) -> AccountRegistered:
    account_id = uuid.uuid4()
    return AccountRegistered(
        account_id=account_id, username=f"u{account_id.hex[:10]}", display_name="张三", email=address
    )


async def test_an_idn_domain_arrives_in_its_punycode_form(start_service: StartService, smtp_server: SmtpServer) -> None:
    async with start_service(smtp_server) as service:
        tag = uuid.uuid4().hex[:10]
        [event_id] = await service.produce(sign_up(f"idn-{tag}@例子.中国"))
        wire = f"idn-{tag}@xn--fsqu00a.xn--fiqs8s"
        [email] = await smtp_server.wait_for(lambda m: wire in m.rcpt_tos, timeout=30)
        assert email.rcpt_tos == [wire]
        assert email.message["To"].addresses[0].addr_spec == wire
        assert email.message["To"].addresses[0].display_name == "张三"
        [sent] = await service.settled(event_id)
        assert sent["attempts"] == 1


async def test_a_unicode_local_part_arrives_where_the_server_offers_smtputf8(
    start_service: StartService, utf8_smtp: Utf8SmtpServer
) -> None:
    async with start_service(utf8_smtp) as service:
        address = f"张三{uuid.uuid4().hex[:8]}@例子.中国"
        wire = address.replace("例子.中国", "xn--fsqu00a.xn--fiqs8s")
        [event_id] = await service.produce(sign_up(address))
        [email] = await utf8_smtp.wait_for(lambda m: wire in m.rcpt_tos, timeout=30)
        assert email.rcpt_tos == [wire]
        assert email.message["To"].addresses[0].addr_spec == wire
        assert "张三" in email.text()
        [sent] = await service.settled(event_id)
        assert sent["attempts"] == 1


async def test_a_unicode_local_part_fails_at_once_with_the_reason_where_the_server_lacks_smtputf8(
    start_service: StartService, ascii_smtp: Utf8SmtpServer
) -> None:
    async with start_service(ascii_smtp) as service:
        local = f"张三{uuid.uuid4().hex[:8]}"
        [event_id] = await service.produce(sign_up(f"{local}@example.org"))
        [failed] = await service.settled(event_id, status="failed")
        assert failed["attempts"] == 1  # permanent: not retried for hours
        assert "SMTPUTF8" in failed["last_error"]
        assert "non-ASCII local part" in failed["last_error"]
        assert local not in failed["last_error"]  # no personal data in the reason
        assert "example.org" not in failed["last_error"]
        assert ascii_smtp.received == []
        # the same server still takes an ASCII address (the session was left usable)
        [other_id] = await service.produce(sign_up(f"ascii-{local[2:]}@example.org"))
        await service.settled(other_id)
