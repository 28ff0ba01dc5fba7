"""The Linear client against the fake Linear: rate limits wait for Linear's reset, an
authentication error renews the credentials once, any other error is permanent with Linear's word."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import respx

from foundry.clients import linear
from foundry.clients.errors import OutboundError
from foundry.clients.linear import LinearClient
from tests import servers
from tests.linear_fake import FakeLinear

URL = "https://linear.test/graphql"
COMMENT_ID = "6f1c2b0e-5d1a-4b7e-9c3d-2a4f6e8b0c1d"


@dataclass
class Renewing:
    """Credentials that hand out `fresh` values in turn when asked to renew, recording each ask."""

    current: str
    fresh: list[str]
    asked: list[str] = field(default_factory=list)

    def authorization(self) -> str:
        return self.current

    def renew(self, rejected: str) -> str | None:
        self.asked.append(rejected)
        if not self.fresh:
            return None
        self.current = self.fresh.pop(0)
        return self.current


@pytest.fixture
def fake() -> Iterator[FakeLinear]:
    fake = FakeLinear()
    fake.add_issue("issue-1")
    with respx.mock(assert_all_mocked=True) as api:
        api.post(URL).mock(side_effect=fake)
        yield fake


def comment(client: LinearClient) -> None:
    client.create_comment(comment_id=COMMENT_ID, issue_id="issue-1", body="Plan ready")


def failure(client: LinearClient) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        comment(client)
    return caught.value


@pytest.mark.parametrize("status", [429, 400])
def test_a_rate_limit_is_retryable_after_linears_reset(fake: FakeLinear, status: int) -> None:
    fake.rate_limit(status=status, reset_s=40)
    error = failure(LinearClient("lin_api_test", base_url=URL))
    assert error.retryable is True
    assert error.retry_after_s is not None and 38 <= error.retry_after_s <= 40
    assert fake.comments == {}


def test_retry_after_wins_over_the_reset_headers(fake: FakeLinear) -> None:
    fake.rate_limit(status=400, reset_s=600, retry_after="7")
    assert failure(LinearClient("lin_api_test", base_url=URL)).retry_after_s == 7.0


def test_the_call_after_a_rate_limit_goes_through(fake: FakeLinear) -> None:
    fake.rate_limit()
    client = LinearClient("lin_api_test", base_url=URL)
    assert failure(client).retryable
    comment(client)
    assert list(fake.comments) == [COMMENT_ID]


def test_an_authentication_error_renews_once_and_retries_with_the_new_header(fake: FakeLinear) -> None:
    fake.accept = {"Bearer fresh"}
    credentials = Renewing("Bearer stale", ["Bearer fresh"])
    comment(LinearClient(credentials=credentials, base_url=URL))
    assert credentials.asked == ["Bearer stale"]
    assert [call.authorization for call in fake.calls] == ["Bearer fresh"]
    assert list(fake.comments) == [COMMENT_ID]


def test_a_second_authentication_error_fails_retryably_without_renewing_again(fake: FakeLinear) -> None:
    fake.reject_authentication(times=2)
    credentials = Renewing("Bearer stale", ["Bearer fresh", "Bearer fresher"])
    error = failure(LinearClient(credentials=credentials, base_url=URL))
    assert (error.retryable, credentials.asked) == (True, ["Bearer stale"])
    assert "fresh" not in str(error) and "stale" not in str(error)
    assert fake.comments == {}


@pytest.mark.parametrize(
    "credentials", [linear.StaticKey("lin_api_wrong"), linear.BearerToken("tok_wrong")], ids=["key", "bearer"]
)
def test_credentials_that_cannot_renew_fail_permanently_on_a_rejection(
    fake: FakeLinear, credentials: linear.Credentials
) -> None:
    fake.accept = {"lin_api_right"}
    error = failure(LinearClient(credentials=credentials, base_url=URL))
    assert error.retryable is False
    assert "wrong" not in str(error)
    assert len(fake.calls) == 0


def test_a_user_error_is_permanent_and_keeps_linears_message(fake: FakeLinear) -> None:
    client = LinearClient("lin_api_test", base_url=URL)
    with pytest.raises(OutboundError) as caught:
        client.attach(issue_id="no-such-issue", url="https://github.com/acme/web/pull/1", title="PR #1")
    assert caught.value.retryable is False
    assert "Entity not found: Issue" in str(caught.value)


def test_a_bearer_token_is_sent_as_bearer_and_a_key_bare(fake: FakeLinear) -> None:
    comment(LinearClient(credentials=linear.BearerToken("tok_1"), base_url=URL))
    LinearClient("lin_api_test", base_url=URL).issue("issue-1")
    assert [call.authorization for call in fake.calls] == ["Bearer tok_1", "lin_api_test"]


def test_a_retried_comment_after_a_rate_limit_is_posted_once_over_real_http() -> None:
    fake = FakeLinear()
    fake.add_issue("issue-1")
    fake.rate_limit(status=400, reset_s=5)
    with servers.in_thread(fake.app) as base:
        client = LinearClient("lin_api_test", base_url=f"{base}/graphql")
        error = failure(client)
        assert error.retryable and error.retry_after_s is not None and error.retry_after_s <= 5
        comment(client)
        comment(client)  # a retry after a lost answer: Linear refuses the id, the client counts it done
        client.close()
    assert fake.operations() == ["CreateComment", "CreateComment"]
    assert len(fake.issues["issue-1"]["comments"]) == 1
