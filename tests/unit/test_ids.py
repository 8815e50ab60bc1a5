import time
import uuid

from actors.ids import uuid4_string, uuid4_strings, uuid7_strings


def test_uuid4_strings_are_canonical_random_version_4_uuids():
    made = uuid4_strings(5000) + [uuid4_string()]
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_every_random_digit_varies():
    # The 30 hex digits that are neither a dash, the version (4) nor the variant (8, 9, a or b) take many values.
    made = uuid4_strings(2000)
    for position in (i for i in range(36) if i not in (8, 13, 14, 18, 19, 23)):
        assert len({text[position] for text in made}) > 8, position
    assert {text[14] for text in made} == {"4"} and {text[19] for text in made} == set("89ab")


def test_uuid7_strings_are_canonical_version_7_uuids_carrying_this_hosts_milliseconds():
    before = int(time.time() * 1000)
    made = uuid7_strings(5000)
    after = int(time.time() * 1000)
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after
    # The 18 hex digits after the time, the version and the variant digit are random.
    for position in (15, 16, 17, 20, 21, 22, *range(24, 36)):
        assert len({text[position] for text in made}) > 8, position
