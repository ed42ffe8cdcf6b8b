"""launcher.Lifecycle: a lost service answer must not fail a bring-up (seen under CPU hogs: the node
logged "failed to send response (timeout)" and the activation timed out although it had happened)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

pytest.importorskip("lifecycle_msgs")

from lifecycle_msgs.msg import State, Transition

from hiopt_ros.launcher import Lifecycle


class Future:
    def __init__(self, result=None) -> None:
        self._result = result

    def done(self) -> bool:
        return self._result is not None

    def result(self):
        return self._result


class Client:
    """Answers its calls from a script: None = the answer is lost."""

    def __init__(self, answers) -> None:
        self.answers, self.calls = list(answers), 0

    def call_async(self, request):
        self.calls += 1
        return Future(self.answers.pop(0) if self.answers else None)


def _lifecycle(change_answers, state_answers) -> Lifecycle:
    lc = Lifecycle.__new__(Lifecycle)
    from lifecycle_msgs.srv import ChangeState, GetState
    lc._srv, lc._get = ChangeState, GetState
    lc.clients = {"sim_node": Client(change_answers)}
    lc.state_clients = {"sim_node": Client(state_answers)}
    return lc


def _spin(_timeout_s: float) -> None:
    time.sleep(0.001)


def test_a_lost_answer_is_asked_again_and_a_done_transition_counts(monkeypatch):
    monkeypatch.setattr(Lifecycle, "RETRY_S", 0.05)
    refused = SimpleNamespace(success=False)
    active = SimpleNamespace(current_state=SimpleNamespace(id=State.PRIMARY_STATE_ACTIVE))
    # 1st request: answer lost (the node activated); 2nd: refused (already active); get_state: active
    lc = _lifecycle([None, refused], [active])
    assert lc.change("sim_node", Transition.TRANSITION_ACTIVATE, _spin, timeout_s=5.0)
    assert lc.clients["sim_node"].calls == 2


def test_a_refused_transition_in_another_state_fails_and_silence_times_out(monkeypatch):
    monkeypatch.setattr(Lifecycle, "RETRY_S", 0.05)
    refused = SimpleNamespace(success=False)
    inactive = SimpleNamespace(current_state=SimpleNamespace(id=State.PRIMARY_STATE_INACTIVE))
    assert not _lifecycle([refused], [inactive]).change("sim_node", Transition.TRANSITION_ACTIVATE, _spin, 5.0)
    silent = _lifecycle([], [])
    assert not silent.change("sim_node", Transition.TRANSITION_ACTIVATE, _spin, timeout_s=0.3)
    assert silent.clients["sim_node"].calls >= 2        # asked again while waiting
    ok = SimpleNamespace(success=True)
    assert _lifecycle([ok], []).change("sim_node", Transition.TRANSITION_DEACTIVATE, _spin, 5.0)
