from hypothesis import given
from hypothesis import strategies as st

from actors.validation import InvalidSyncRequest, SyncRequest, parse_operation_id, validate_request

CHAINS = (1, 10, 137)
anything = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary(),
                     st.lists(st.integers()), st.dictionaries(st.text(), st.integers()))


def test_a_valid_request_is_normalised():
    r = validate_request("u1", "0x" + "AB" * 20, [137, 1, 1], priority="high", supported_chains=CHAINS)
    assert r == SyncRequest("u1", "0x" + "ab" * 20, (1, 137), "high", False, "api")
    assert validate_request("u1", "0x" + "ab" * 20, None, supported_chains=CHAINS).chain_ids == CHAINS


@given(user_id=anything, wallet=anything, chains=st.one_of(anything, st.lists(anything)),
       priority=anything, force=anything, trigger=anything)
def test_any_input_gives_a_request_or_a_clear_error(user_id, wallet, chains, priority, force, trigger):
    try:
        r = validate_request(user_id, wallet, chains, priority=priority, force=force, trigger=trigger,
                             supported_chains=CHAINS)
    except InvalidSyncRequest as exc:
        assert str(exc)  # says what is wrong
    else:
        assert set(r.chain_ids) <= set(CHAINS) and r.wallet_address.islower()


@given(st.text(max_size=200))
def test_user_ids_of_any_text_are_accepted_or_rejected_cleanly(user_id):
    try:
        r = validate_request(user_id, "0x" + "1" * 40, supported_chains=CHAINS)
    except InvalidSyncRequest:
        assert not user_id.strip() or len(user_id) > 128 or "\x00" in user_id
    else:
        assert r.user_id == user_id


def test_operation_ids():
    assert parse_operation_id("6F9619FF-8B86-D011-B42D-00C04FC964FF") == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    for bad in [None, 1, "", "x", "6f9619ff" * 20, b"6f9619ff-8b86-d011-b42d-00c04fc964ff"]:
        assert parse_operation_id(bad) is None
