"""The lectures' claim checks: a false sentence fails in normal mode, quick mode skips
result claims but still checks the ones marked quick."""
import pytest

from dlstudio_lite import claims


@pytest.fixture(autouse=True)
def _fresh_tally():
    claims.reset()
    yield
    claims.reset()


def test_a_false_claim_fails_in_normal_mode_and_names_its_sentence(monkeypatch):
    monkeypatch.setenv("DLSTUDIO_LITE_QUICK", "0")
    claims.claim(3 > 2, "three beats two")
    with pytest.raises(claims.ClaimError, match="the KL falls") as info:
        claims.claim(450 < 400, "the KL falls", detail="end 450, minimum 400")
    assert "end 450, minimum 400" in str(info.value)
    assert claims.summary() == "2 claims checked"


def test_quick_mode_skips_result_claims_but_checks_quick_ones(monkeypatch):
    monkeypatch.setenv("DLSTUDIO_LITE_QUICK", "1")
    claims.claim(False, "a trained result")          # skipped: tiny models in quick mode
    with pytest.raises(claims.ClaimError):
        claims.claim(False, "an identity", quick=True)
    assert claims.summary() == "1 claims checked, 1 skipped in quick mode"


def test_say_checks_each_part_before_showing(monkeypatch, capsys):
    monkeypatch.setenv("DLSTUDIO_LITE_QUICK", "0")
    claims.say("PSNR 21.7 dB beats 19.2 dB", (21.7 > 19.2, "both levels beat the top alone"))
    with pytest.raises(claims.ClaimError, match="top alone"):
        claims.say("text", (False, "top alone wins"))
    with pytest.raises(ValueError, match="sentence"):
        claims.claim(True, "  ")
