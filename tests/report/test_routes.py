"""The RCA's per-route split (issue 17, part 2): which ``http.route`` regressed, canary vs baseline."""

from __future__ import annotations

from rollwise.core.model import VersionStats, Window
from rollwise.report.routes import route_splits


def stats(routes: dict[str, tuple[int, int, float]]) -> VersionStats:
    extra: dict[str, float] = {}
    for route, (requests, errors, latency_ms) in routes.items():
        extra |= {f"route.requests:{route}": requests, f"route.errors:{route}": errors,
                  f"route.latency_sum_ms:{route}": latency_ms * requests}
    return VersionStats(requests=sum(r[0] for r in routes.values()), errors=sum(r[1] for r in routes.values()),
                        extra=extra)


def window(start: float, canary: dict[str, tuple[int, int, float]], baseline: dict[str, tuple[int, int, float]]
           ) -> Window:
    return Window(start, start + 10, stats(baseline), stats(canary))


def test_the_route_whose_errors_rose_comes_first_and_the_others_are_not_blamed() -> None:
    windows = [window(i * 10.0, canary={"/cart": (100, 0, 20), "/checkout": (100, 8, 20), "/search": (100, 0, 90)},
                      baseline={"/cart": (100, 0, 20), "/checkout": (100, 0, 20), "/search": (100, 0, 20)})
               for i in range(3)]
    splits = route_splits(windows)
    assert [s.route for s in splits][:2] == ["/checkout", "/search"]
    checkout, search = splits[0], splits[1]
    assert checkout.regressed == "errors" and (checkout.canary_errors, checkout.canary_requests) == (24, 300)
    assert checkout.error_z is not None and checkout.error_z > 3.1
    assert search.regressed == "latency" and search.canary_mean_ms == 90 and search.baseline_mean_ms == 20
    cart = next(s for s in splits if s.route == "/cart")
    assert cart.regressed is None and "regressed" not in cart.text()
    assert "errors regressed here" in checkout.text() and "8.00% (24/300)" in checkout.text()


def test_no_split_without_route_counts_and_too_few_requests_blame_nothing() -> None:
    assert route_splits([Window(0, 10, VersionStats(requests=10), VersionStats(requests=10))]) == []
    few = route_splits([window(0, canary={"/a": (5, 3, 500)}, baseline={"/a": (5, 0, 10)})])
    assert few[0].regressed is None and few[0].error_z is None  # 3 of 5 against 0 of 5: p 0.08, not enough


def test_a_fast_rollbacks_few_requests_on_the_failing_route_still_name_it() -> None:
    """Fisher's exact test needs no normal approximation: 11 of 22 failed against 0 of 97 (a rollback within
    seconds, as the demo's) is plainly the route, while 1 of 20 against 0 of 100 is not."""
    splits = route_splits([window(0, canary={"/checkout": (22, 11, 30), "/cart": (20, 1, 30)},
                                  baseline={"/checkout": (97, 0, 8), "/cart": (100, 0, 8)})])
    checkout = next(s for s in splits if s.route == "/checkout")
    assert checkout.regressed == "errors" and checkout.error_z is None  # under 30 requests: no z
    assert checkout.error_p is not None and checkout.error_p < 1e-8
    assert "errors regressed here" in checkout.text() and "; p " in checkout.text()
    cart = next(s for s in splits if s.route == "/cart")
    assert cart.regressed is None and cart.error_p is not None and cart.error_p > 0.1
