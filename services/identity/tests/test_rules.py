"""The identity rules without I/O: documents, ages, masking, passwords, images, crypto."""

from __future__ import annotations

from datetime import date

import pytest
from cryptography.exceptions import InvalidTag

from identity.crypto import DataCipher, Sealed
from identity.domain import documents
from identity.domain.documents import DocumentType
from identity.domain.images import JPEG, PNG, sniff
from identity.domain.password_policy import check_password
from identity.testing import JPEG_BYTES, PNG_BYTES
from shared.errors import AppError
from shared.testing import resident_id


def code_of(exc: pytest.ExceptionInfo[AppError]) -> str:
    return exc.value.code


def test_resident_id_gives_the_birth_date_and_lower_case_x_is_accepted() -> None:
    number = resident_id(birth=date(2001, 2, 3))
    normalised, born = documents.check_document(DocumentType.RESIDENT_ID, number.lower(), None)
    assert (normalised, born) == (number.upper(), date(2001, 2, 3))


def test_a_given_birth_date_must_match_the_resident_id() -> None:
    with pytest.raises(AppError) as exc:
        documents.check_document(DocumentType.RESIDENT_ID, resident_id(birth=date(2001, 2, 3)), date(2001, 2, 4))
    assert code_of(exc) == "birth_date_mismatch"


def test_age_counts_whole_years_and_a_birthday_today_counts() -> None:
    assert documents.age_on(date(2012, 3, 1), date(2026, 2, 28)) == 13
    assert documents.age_on(date(2012, 3, 1), date(2026, 3, 1)) == 14
    with pytest.raises(AppError) as exc:
        documents.check_age(date(2012, 3, 2), date(2026, 3, 1), minimum_age=14)
    assert code_of(exc) == "too_young"


def test_numbers_and_names_are_masked() -> None:
    assert documents.mask_number(DocumentType.RESIDENT_ID, "11010519491231002X") == "110105********002X"
    assert documents.mask_number(DocumentType.PASSPORT, "E12345678") == "E1*****78"
    assert documents.mask_name("欧阳娜娜") == "欧***"
    assert documents.mask_name("张") == "张"


def test_mobile_numbers_are_normalised() -> None:
    assert documents.check_mobile("+86 138-1234-5678") == "13812345678"
    with pytest.raises(AppError):
        documents.check_mobile("12812345678")


def test_permit_numbers_follow_their_format() -> None:
    assert documents.check_document(DocumentType.HK_MACAO_PERMIT, "H12345678", date(1990, 1, 1))[0] == "H12345678"
    with pytest.raises(AppError) as exc:
        documents.check_document(DocumentType.TAIWAN_PERMIT, "T1234567", date(1990, 1, 1))
    assert code_of(exc) == "document_number_invalid"


def test_password_containing_the_username_is_refused() -> None:
    with pytest.raises(AppError) as exc:
        check_password("xiaoming-forever-2026", username="xiaoming")
    assert code_of(exc) == "password_contains_username"
    check_password("a perfectly fine phrase", username="xiaoming")


def test_images_are_recognised_by_their_bytes_not_their_names() -> None:
    assert sniff(PNG_BYTES) == PNG
    assert sniff(JPEG_BYTES) == JPEG
    assert sniff(b"GIF89a....") is None
    assert sniff(b"<svg xmlns=...>") is None


def test_ciphertexts_keep_their_key_id_so_keys_can_rotate() -> None:
    old = DataCipher({"k1": b"\x01" * 32}, "k1", b"\x09" * 32)
    sealed = old.seal(b"11010519491231002X", context=b"resident_id")
    rotated = DataCipher({"k1": b"\x01" * 32, "k2": b"\x02" * 32}, "k2", b"\x09" * 32)
    assert rotated.open(sealed, context=b"resident_id") == b"11010519491231002X"
    assert rotated.seal(b"x").key_id == "k2"
    # The blind index depends on its own key only, so rotation keeps lookups working.
    assert old.blind_index("resident_id:1") == rotated.blind_index("resident_id:1")
    with pytest.raises(InvalidTag):  # the context is authenticated
        rotated.open(Sealed(sealed.key_id, sealed.data), context=b"passport")


def test_full_width_digits_fold_to_the_same_number_and_blind_index() -> None:
    number = resident_id()
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in number)
    assert documents.check_document(DocumentType.RESIDENT_ID, full_width, None)[0] == number
    assert documents.normalise_number(DocumentType.PASSPORT, "Ｅ１２３４５６７８") == "E12345678"
    assert documents.check_mobile("１３８１２３４５６７８") == "13812345678"
    with pytest.raises(AppError):
        documents.check_mobile("١٣٨١٢٣٤٥٦٧٨")  # Arabic-Indic digits are not a Chinese mobile


def test_a_number_whose_area_has_no_counties_is_refused_not_crashed() -> None:
    number = resident_id(region="110199")  # a valid check digit on an area stdnum cannot look up
    with pytest.raises(AppError) as refused:
        documents.check_document(DocumentType.RESIDENT_ID, number, None)
    assert refused.value.spec.code == "id_number_area_invalid"
    assert refused.value.detail == {"reason": "area"}


# -- deployment settings --------------------------------------------------------------------------
def test_a_signing_key_written_on_one_line_with_escaped_line_breaks_is_read() -> None:
    from identity.bootstrap import build_signer
    from identity.config import IdentitySettings
    from shared.auth import TokenSigner
    from shared.clock import ManualClock

    pem = TokenSigner.generate_pem().decode()
    one_line = pem.strip().replace("\n", "\\n")  # as deploy/env.example writes it
    settings = IdentitySettings(environment="development", jwt_private_key=one_line)
    signer = build_signer(settings, ManualClock())
    assert signer.jwks()["keys"][0]["kid"] == TokenSigner(pem.encode(), issuer="x", audience="y").kid


@pytest.mark.parametrize("setting", ["password_reset_url", "card_verification_url"])
def test_production_refuses_pages_on_localhost(setting: str) -> None:
    from pydantic import ValidationError

    from identity.config import IdentitySettings

    real = {
        "environment": "production",
        "secret_key": "a-real-secret",
        "amqp_url": "amqps://identity:pw@mq.internal:5671/",
        "jwt_private_key": "pem",
        "data_keys": "k1:AAAA",
        "blind_index_key": "BBBB",
        "password_reset_url": "https://www.volunteer.example.cn/reset-password",
        "card_verification_url": "https://www.volunteer.example.cn/api/v1/card-verifications",
    }
    IdentitySettings(**real)  # starts
    with pytest.raises(ValidationError) as refused:
        IdentitySettings(**{**real, setting: "http://localhost:8001/page"})
    assert setting in str(refused.value)
