"""Redaction of a spec's secrets: what readers see, and what a GET→PUT round trip keeps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rollwise.spec.models import NotifySpec
from rollwise.spec.secrets import fingerprint, keep_redacted, redact, redact_spec_dict

SLACK = "https://hooks.slack.com/services/T000/B000/tok3nXYZ"


def test_readers_see_scheme_host_and_a_fingerprint_only() -> None:
    shown = redact_spec_dict({"name": "x", "notify": {"slack": SLACK, "webhookSecret": "k3y", "reportUrl": "https://r"}})
    assert shown["notify"] == {"slack": f"https://hooks.slack.com/***sha256:{fingerprint(SLACK)}",
                               "webhookSecret": f"***sha256:{fingerprint('k3y')}", "reportUrl": "https://r"}
    assert redact("weird***sha256:0123abcd-secret", False) != "weird***sha256:0123abcd-secret"


def test_a_redacted_value_sent_back_keeps_the_secret_and_a_forged_one_is_flagged() -> None:
    current = {"slack": SLACK, "webhookSecret": "k3y"}
    shown = redact_spec_dict({"notify": current})["notify"]
    assert keep_redacted(shown, current) == (current, [])
    assert keep_redacted({**shown, "webhookSecret": "***sha256:00000000"}, current)[1] == ["webhookSecret"]
    assert keep_redacted({"webhookSecret": "new"}, current) == ({"webhookSecret": "new"}, [])


def test_env_references_name_only_rollwise_notify_variables() -> None:
    assert NotifySpec(slackEnv="ROLLWISE_NOTIFY_PAYMENTS").slackEnv == "ROLLWISE_NOTIFY_PAYMENTS"
    for bad in ({"webhookSecretEnv": "AWS_SECRET_ACCESS_KEY"}, {"slack": SLACK, "slackEnv": "ROLLWISE_NOTIFY_X"}):
        with pytest.raises(ValidationError):
            NotifySpec.model_validate(bad)
