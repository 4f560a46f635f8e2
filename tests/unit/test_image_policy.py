"""Tag selection of ImagePolicy, with image-reflector-controller's rules."""

from __future__ import annotations

import pytest

from image_automation.policy import InvalidPolicy, NoMatch, TagFilter, latest_tag, parse_policy

TAGS = [
    "1.0.0",
    "1.1.0",
    "1.2.0-rc.1",
    "2.0.0",
    "v1.1.5",
    "1.3",  # two parts: not a version for a policy
    "latest",
    "main-7a8b9c0-1700000300",
    "main-1d2e3f4-1700000100",
    "main-aa11bb2-1700000200",
    "feature-x-1800000000",
    "1.0.0.sig",
]


@pytest.mark.parametrize(
    ("range_", "expected"),
    [
        (">=1.0.0 <2.0.0", "v1.1.5"),  # a "v" prefix is a version; 1.2.0-rc.1 is a prerelease
        (">=1.0.0-0", "2.0.0"),
        (">=1.2.0-0 <2.0.0", "1.2.0-rc.1"),  # the range asks for prereleases
        ("~1.0", "1.0.0"),
        ("1.x", "v1.1.5"),
    ],
)
def test_semver_picks_the_highest_version_in_the_range(range_: str, expected: str) -> None:
    assert latest_tag(parse_policy({"semver": {"range": range_}}), TAGS) == expected


def test_semver_without_a_match_and_with_a_bad_range() -> None:
    with pytest.raises(NoMatch, match="unable to determine latest version"):
        latest_tag(parse_policy({"semver": {"range": ">=3.0.0"}}), TAGS)
    with pytest.raises(InvalidPolicy, match="invalid policy"):
        parse_policy({"semver": {"range": "not a range"}})
    with pytest.raises(NoMatch, match="cannot be empty"):
        latest_tag(parse_policy({"semver": {"range": "*"}}), [])


def test_alphabetical_orders_bytes_and_asc_takes_the_last() -> None:
    tags = ["RELEASE.2024-01-02", "RELEASE.2024-11-30", "RELEASE.2024-02-10", "a", "B"]
    assert latest_tag(parse_policy({"alphabetical": {}}), tags) == "a"
    assert latest_tag(parse_policy({"alphabetical": {"order": "asc"}}), tags) == "a"
    assert latest_tag(parse_policy({"alphabetical": {"order": "desc"}}), tags) == "B"
    releases = TagFilter("^RELEASE")
    assert latest_tag(parse_policy({"alphabetical": {}}), tags, releases) == "RELEASE.2024-11-30"
    with pytest.raises(InvalidPolicy, match="must be one of: ASC, DESC"):
        parse_policy({"alphabetical": {"order": "newest"}})


def test_numerical_with_an_extracted_timestamp() -> None:
    stamps = TagFilter(r"^main-[a-f0-9]+-(?P<ts>[0-9]+)$", "$ts")
    policy = parse_policy({"numerical": {"order": "asc"}})
    assert latest_tag(policy, TAGS, stamps) == "main-7a8b9c0-1700000300"
    oldest = parse_policy({"numerical": {"order": "desc"}})
    assert latest_tag(oldest, TAGS, stamps) == "main-1d2e3f4-1700000100"
    # Without a filter, a tag that is not a number fails the policy, as in Flux.
    with pytest.raises(NoMatch, match=r"failed to parse invalid numeric value '1\.0\.0'"):
        latest_tag(policy, TAGS)
    # A tie: the later tag wins.
    assert latest_tag(policy, ["10", "9", "10.0"]) == "10.0"


def test_extract_expands_as_go_does() -> None:
    def extracted(pattern: str, extract: str, tag: str) -> list[str]:
        return list(TagFilter(pattern, extract).apply([tag]))

    pattern = r"^(?P<env>[a-z]+)-(?P<n>[0-9]+)(-(?P<opt>x))?$"
    assert extracted(pattern, "$n", "prod-42") == ["42"]
    assert extracted(pattern, "${env}_$n", "prod-42") == ["prod_42"]
    assert extracted(pattern, "$1.$2", "prod-42") == ["prod.42"]
    assert extracted(pattern, "$envx", "prod-42") == [""]  # $envx: no such group
    assert extracted(pattern, "${opt}|$9|$$|$-", "prod-42") == ["||$|$-"]
    assert extracted(pattern, "", "prod-42") == ["prod-42"]
    # The same extracted value twice: the later tag stands for it.
    assert TagFilter(r"-(?P<n>\d+)$", "$n").apply(["a-1", "b-1"]) == {"1": "b-1"}


def test_filter_patterns_are_go_regular_expressions() -> None:
    with pytest.raises(InvalidPolicy, match="invalid regular expression pattern"):
        TagFilter("(?<=lookbehind)x")  # Python's re has it, Go's RE2 does not
    with pytest.raises(InvalidPolicy, match="given ImagePolicyChoice object is invalid"):
        parse_policy({})
