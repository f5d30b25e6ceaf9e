"""The fairness benchmark as a test (a smaller run): safety checks hold and shares follow the weights."""

from leadbridge_router.bench import main, simulate


def test_bench_is_safe_and_fair():
    result = simulate(2000, seed=3, minutes_between=8.0)
    assert result["cap_violations"] == 0 and result["unavailable"] == 0
    assigned = result["outcomes"]["assigned"]
    assert assigned > 1500
    for rep, got in result["actual"].items():
        team = result["roster"].rep(rep).team
        pool_total = sum(n for r, n in result["actual"].items() if result["roster"].rep(r).team == team)
        assert abs(got - result["expected"][rep]) / pool_total < 0.02, rep


def test_bench_cli_prints_the_report(capsys):
    assert main(["--leads", "300"]) == 0
    out = capsys.readouterr().out
    assert "largest deviation" in out and "cap violations: 0" in out and "unavailable reps: 0" in out
