"""The pure rules of teams: names (T2), kinds and credit codes (T1), liaison (T3), review clock (T5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from stdnum.cn import uscc

from shared import regions
from shared.errors import AppError
from teams.domain import review
from teams.domain.kinds import TeamKind, check_registration
from teams.domain.liaison import LiaisonCandidate, liaison_refusal, liaison_region_for
from teams.domain.naming import check_team_name, name_key


def credit_code(department: str, category: str, region: str = "330106", org: str = "MJ0000001") -> str:
    body = f"{department}{category}{region}{org}"
    return body + uscc.calc_check_digit(body)


# -- T2 names -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["西湖区阳光志愿服务队", "浙江大学青年志愿者协会", "文三社区志愿服务站"])
def test_team_form_names_are_accepted(name: str) -> None:
    assert check_team_name(f"  {name} ") == name


@pytest.mark.parametrize(
    "name",
    [
        "西湖某某大学青年志愿者服务总队",
        "西湖区某某志愿服务总队",
        "西湖区义工联合会",
        "深圳市义工联合会",
        "西湖区某某志愿者联盟",
        "西湖区某某志愿服务工作站",
        "阳光义工社",
        "阳光志愿服务团",
        "阳光志愿者俱乐部",
        "阳光志愿者之家",
        "阳光志愿服务小组",
        "阳光志愿服务促进会",
        "阳光志愿者服务中队",
        "某某公司青年志愿者协会",
    ],
)
def test_equivalent_team_forms_are_accepted(name: str) -> None:
    """T2's "equivalent team form": a volunteer word (志愿, 志愿者, 义工), 服务 or 工作 optionally,
    then a kind of team, after the XXX; not only the endings of a list."""
    assert check_team_name(name) == name


@pytest.mark.parametrize("name", ["香港某某志願服務隊", "澳門義工聯合會", "台北某某志願者協會"])
def test_equivalent_team_forms_in_traditional_characters_are_accepted_as_written(name: str) -> None:
    assert check_team_name(name) == name


def test_a_civil_rescue_team_is_a_team_form_but_a_fire_brigade_is_not() -> None:
    assert check_team_name("西湖区蓝天救援队") == "西湖区蓝天救援队"
    assert check_team_name("西湖区蓝天应急救援大队") == "西湖区蓝天应急救援大队"
    # units of the state, not civil teams: the fire and rescue service (a space does not hide it), a
    # bureau's, the state's own
    for name in (
        "西湖区消防救援大队",
        "杭州市消防 救援支队",
        "某某消防　救援大队",
        "杭州市应急管理局救援大队",
        "公安局救援队",
        "国家矿山应急救援大队",
    ):
        with pytest.raises(AppError) as caught:
            check_team_name(name)
        assert caught.value.code == "team_name_form_required", name
    assert check_team_name("西湖区消防志愿服务队") == "西湖区消防志愿服务队"  # volunteers of fire safety


@pytest.mark.parametrize("ending", ["义工联合会", "志愿者服务总队", "志愿服务工作站", "救援队", "志願服務隊"])
def test_an_equivalent_form_alone_is_refused_as_missing_its_name(ending: str) -> None:
    with pytest.raises(AppError) as caught:
        check_team_name(ending)
    assert caught.value.code == "team_name_form_required"
    assert "XXX志愿服务队" in caught.value.spec.message("zh", caught.value.params)


@pytest.mark.parametrize(
    ("name", "refusal"),
    [
        ("西湖区阳光服务队", "team_name_form_required"),  # a kind of team without a volunteer word
        ("西湖区志愿者读书会馆", "team_name_form_required"),  # a volunteer word without a kind of team
        ("西湖区志愿服务委员会", "team_name_not_allowed"),  # an institution's own name
        ("西湖某某大学", "team_name_not_allowed"),
    ],
)
def test_names_in_no_team_form_are_still_refused(name: str, refusal: str) -> None:
    with pytest.raises(AppError) as caught:
        check_team_name(name)
    assert caught.value.code == refusal
    assert "XXX志愿服务队" in caught.value.spec.message("zh", caught.value.params)


def test_names_that_differ_only_in_spaces_width_or_case_have_one_key() -> None:
    key = name_key("西湖阳光F3志愿服务队")
    assert key == "西湖阳光f3志愿服务队"
    for twin in (
        "西湖 阳光F3志愿服务队",
        "西湖阳光f3志愿服务队",
        "西湖\u3000阳光Ｆ３志愿服务队",
        " 西湖阳光 F 3 志愿服务队",
    ):
        assert name_key(twin) == key, twin
    assert name_key("西湖阳光F4志愿服务队") != key


@pytest.mark.parametrize(("name", "ending"), [("杭州某某科技有限公司", "有限公司"), ("杭州市文三路小学", "小学")])
def test_bare_company_or_school_name_is_refused_with_the_form_to_use(name: str, ending: str) -> None:
    with pytest.raises(AppError) as caught:
        check_team_name(name)
    assert caught.value.code == "team_name_not_allowed"
    assert caught.value.detail["ending"] == ending
    message = caught.value.spec.message("zh", caught.value.params)
    assert "XXX志愿服务队" in message
    assert f"{name}志愿服务队" in message


def test_name_without_a_team_form_is_refused() -> None:
    with pytest.raises(AppError) as caught:
        check_team_name("西湖读书会")
    assert caught.value.code == "team_name_form_required"


def test_the_form_ending_alone_is_refused_as_missing_its_name() -> None:
    with pytest.raises(AppError) as caught:
        check_team_name("志愿服务队")
    assert caught.value.code == "team_name_form_required"


def test_a_name_in_the_form_but_too_long_is_refused_as_too_long_not_as_out_of_form() -> None:
    longest = "北京市朝阳区" + "某" * 49 + "志愿服务队"
    assert check_team_name(longest) == longest  # 60 characters
    with pytest.raises(AppError) as caught:
        check_team_name("北京市朝阳区" + "某" * 50 + "志愿服务队")
    assert caught.value.code == "team_name_length"
    assert caught.value.detail["max_length"] == 60
    assert caught.value.spec.message("zh", caught.value.params) == "志愿团体名称过长,请控制在 60 个字以内(现为 61 个字)"
    assert "at most 60 characters (it has 61)" in caught.value.spec.message("en", caught.value.params)


def test_full_width_characters_are_normalised() -> None:
    assert check_team_name("ＡＢＣ志愿服务队") == "ABC志愿服务队"


@pytest.mark.parametrize(
    "invisible",
    [
        "\u200b\u200b",
        "\u2060",
        "\ufeff",
        "\u00ad\u00ad",
        "\u200d\u200c",
        "\u200e",
        "\u3164\u3164",
        "\u115f",
        "\u2800\u2800",
        "\u180e",
        "…—",
    ],
)
def test_a_form_whose_name_part_shows_nothing_is_the_bare_form(invisible: str) -> None:
    """Zero-width and format characters, fillers and blanks, or punctuation alone, are no XXX."""
    with pytest.raises(AppError) as caught:
        check_team_name(f"{invisible}志愿服务队")
    assert caught.value.code == "team_name_form_required"


def test_invisible_characters_inside_a_name_are_removed_so_look_alikes_are_one_name() -> None:
    assert check_team_name("阳光\u200b西湖\u00ad志愿\u2060服务队") == "阳光西湖志愿服务队"
    for drawn_as_nothing in ("\u3164", "\ufe0f", "\u034f", "\u17b4", "\u2061", "\U000e0041"):
        assert check_team_name(f"阳光{drawn_as_nothing}西湖志愿服务队") == "阳光西湖志愿服务队"
    assert check_team_name("阳光\u2800西湖志愿服务队") == "阳光 西湖志愿服务队"  # drawn as a blank


def test_the_example_given_for_an_institution_name_is_a_name_that_would_be_accepted() -> None:
    examples = []
    for name in ("杭州" + "某" * 49 + "有限公司", "杭州" + "某" * 52 + "有限公司"):  # 55 and 58 characters
        with pytest.raises(AppError) as caught:
            check_team_name(name)
        assert caught.value.code == "team_name_not_allowed"
        example = caught.value.detail["example"]
        assert example in caught.value.spec.message("zh", caught.value.params)
        assert "不超过 60 个字" in caught.value.spec.message("zh", caught.value.params)
        examples.append(example)
    # the 55-character name in the form fits (60) and is accepted; the 58-character one would be 63
    assert examples[0] == "杭州" + "某" * 49 + "有限公司志愿服务队"
    assert check_team_name(examples[0]) == examples[0]
    assert examples[1] == "XXX志愿服务队"


# -- T1 kinds -------------------------------------------------------------------------------------
def test_social_group_with_a_valid_civil_affairs_code_is_accepted() -> None:
    code = credit_code("5", "1")
    assert check_registration(TeamKind.SOCIAL_GROUP, code.lower(), "330106") == (code, "330106")


def test_social_organisation_needs_code_and_authority() -> None:
    with pytest.raises(AppError) as caught:
        check_registration(TeamKind.FOUNDATION, None, "330106")
    assert caught.value.code == "uscc_required"


def test_wrong_check_character_is_refused() -> None:
    code = credit_code("5", "3")
    wrong = code[:-1] + ("0" if code[-1] != "0" else "1")
    with pytest.raises(AppError) as caught:
        check_registration(TeamKind.FOUNDATION, wrong, "330106")
    assert caught.value.code == "uscc_invalid"


def test_company_code_is_not_a_civil_affairs_registration() -> None:
    with pytest.raises(AppError) as caught:
        check_registration(TeamKind.SOCIAL_GROUP, credit_code("9", "1"), "330106")
    assert caught.value.code == "uscc_not_civil_affairs"


def test_code_category_must_match_the_kind() -> None:
    with pytest.raises(AppError) as caught:
        check_registration(TeamKind.FOUNDATION, credit_code("5", "1"), "330106")
    assert caught.value.code == "uscc_kind_mismatch"


def test_the_registration_authority_is_the_region_that_issued_the_code() -> None:
    """T5: the authority reviews, so it is the one whose region the code carries (characters 3-8),
    not one the applicant picks."""
    code = credit_code("5", "1", region="330106")
    with pytest.raises(AppError) as caught:
        check_registration(TeamKind.SOCIAL_GROUP, code, "110105")
    assert caught.value.code == "uscc_authority_mismatch"
    assert caught.value.detail == {"issued_in": "330106", "authority_region": "110105"}
    assert "(330106)" in caught.value.spec.message("zh", caught.value.params)
    # a city's bureau issues codes with the city's region, and reviews as the city
    city = credit_code("5", "1", region="330100")
    assert check_registration(TeamKind.SOCIAL_GROUP, city, "330100") == (city, "330100")
    with pytest.raises(AppError):
        check_registration(TeamKind.SOCIAL_GROUP, city, "330106")


def test_a_code_from_a_region_that_no_longer_exists_names_an_authority_in_its_province() -> None:
    withdrawn = credit_code("5", "1", region="330103")  # Xiacheng, merged into Gongshu in 2021
    assert check_registration(TeamKind.SOCIAL_GROUP, withdrawn, "330105") == (withdrawn, "330105")
    with pytest.raises(AppError) as caught:
        check_registration(TeamKind.SOCIAL_GROUP, withdrawn, "110105")
    assert caught.value.code == "uscc_authority_mismatch"
    nowhere = credit_code("5", "1", region="999999")
    with pytest.raises(AppError) as caught:
        check_registration(TeamKind.SOCIAL_GROUP, nowhere, "330106")
    assert caught.value.code == "uscc_authority_mismatch"


def test_an_organisation_the_ministry_registered_names_the_national_authority() -> None:
    national = credit_code("5", "1", region="100000")  # 民政部: no region of GB/T 2260
    assert check_registration(TeamKind.SOCIAL_GROUP, national, "100000") == (national, "100000")
    with pytest.raises(AppError) as caught:
        check_registration(TeamKind.SOCIAL_GROUP, national, "110105")
    assert caught.value.code == "uscc_authority_mismatch"
    with pytest.raises(AppError) as caught:  # 100000 is the ministry only for the ministry's codes
        check_registration(TeamKind.SOCIAL_GROUP, credit_code("5", "1", region="110105"), "100000")
    assert caught.value.code == "region_invalid"


def test_unregistered_group_gives_no_code() -> None:
    assert check_registration(TeamKind.OTHER, None, None) == (None, None)
    with pytest.raises(AppError) as caught:
        check_registration(TeamKind.UNREGISTERED, credit_code("5", "1"), "330106")
    assert caught.value.code == "uscc_not_allowed"


# -- T3, T4 liaison -------------------------------------------------------------------------------
def ok(region: str) -> LiaisonCandidate:
    return LiaisonCandidate(region, approved=True, authorised=True)


def test_liaison_one_level_up_in_the_same_city_is_valid() -> None:
    assert liaison_refusal("330106", ok("330100")) is None  # Xihu district under Hangzhou
    assert liaison_refusal("110105", ok("110000")) is None  # Chaoyang under Beijing municipality
    assert liaison_refusal("330100", ok("330000")) is None  # Hangzhou under Zhejiang


def test_unauthorised_liaison_is_refused() -> None:
    candidate = LiaisonCandidate("330100", approved=True, authorised=False)
    assert liaison_refusal("330106", candidate) is not None
    assert liaison_refusal("330106", candidate).code == "liaison_not_authorised"  # type: ignore[union-attr]


def test_liaison_in_another_city_is_refused_as_cross_city() -> None:
    assert liaison_refusal("330106", ok("330200")).code == "liaison_cross_city"  # type: ignore[union-attr]


def test_liaison_two_levels_up_is_refused_as_cross_level() -> None:
    assert liaison_refusal("330106", ok("330000")).code == "liaison_cross_level"  # type: ignore[union-attr]


def test_liaison_at_the_same_level_is_refused_as_cross_level() -> None:
    assert liaison_refusal("330106", ok("330106")).code == "liaison_cross_level"  # type: ignore[union-attr]


def test_neighbouring_county_is_refused_as_outside_region() -> None:
    regions.load_townships()
    township = regions.children("330106")[0].code
    assert liaison_refusal(township, ok("330106")) is None
    assert liaison_refusal(township, ok("330102")).code == "liaison_outside_region"  # type: ignore[union-attr]


def test_the_liaison_region_is_the_parent() -> None:
    assert liaison_region_for("330106") == "330100"
    assert liaison_region_for("330000") is None


# -- T5 review clock ------------------------------------------------------------------------------
SUBMITTED = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def test_reminder_before_four_days_says_when_it_becomes_possible() -> None:
    verdict = review.reminder_decision(SUBMITTED, None, SUBMITTED + timedelta(days=3, hours=23))
    assert not verdict.allowed
    assert verdict.too_early
    assert verdict.not_before == SUBMITTED + timedelta(days=4)


def test_reminder_from_day_four_at_most_once_a_day() -> None:
    day4 = SUBMITTED + timedelta(days=4)
    assert review.reminder_decision(SUBMITTED, None, day4).allowed
    again = review.reminder_decision(SUBMITTED, day4, day4 + timedelta(hours=5))
    assert not again.allowed
    assert not again.too_early
    assert again.not_before == day4 + timedelta(days=1)
    assert review.reminder_decision(SUBMITTED, day4, day4 + timedelta(days=1)).allowed


def test_overdue_from_day_seven() -> None:
    assert not review.is_overdue(SUBMITTED, SUBMITTED + timedelta(days=6, hours=23))
    assert review.is_overdue(SUBMITTED, SUBMITTED + timedelta(days=7))
