"""The four network kinds obey the contract in torch: shapes, state carry, quantile order,
and their seasonal reference, calendar features and calibration do what they say."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from models.networks import KINDS, Kind, build  # noqa: E402

pytestmark = pytest.mark.train

QUANTILES = (0.1, 0.5, 0.9)


DAY = 86_400.0


def tiny(  # type: ignore[no-untyped-def]
    kind: Kind,
    *,
    features: int = 2,
    target: int = 1,
    layers: int = 2,
    differences: bool = False,
    reference: int = 0,
    calendar: tuple[float, ...] = (),
):
    torch.manual_seed(0)
    return build(
        kind,
        n_features=features,
        target_index=target,
        horizon=3,
        quantiles=QUANTILES,
        hidden=6,
        layers=layers,
        window=max(4, reference),
        differences=differences,
        mean=[10.0, -2.0][:features],
        std=[3.0, 0.5][:features],
        diff_std=[1.5, 0.25][:features],
        reference=reference,
        reference_std=None if not reference else 0.75,
        calendar=calendar,
    ).eval()


def times(batch: int, steps: int, seed: int = 0) -> torch.Tensor:
    """Half-hourly epoch seconds from a random start in 2026 (float64)."""
    start = 1.77e9 + torch.rand(batch, 1, generator=torch.Generator().manual_seed(seed)) * 3e7
    return (start + 1800.0 * torch.arange(steps)).to(torch.float64)


#: (kind, differences, reference, calendar): every kind plain; the recurrent ones with the
#: differenced input; every kind with a seasonal reference of 5 steps and two calendar periods.
VARIANTS = (
    [(kind, False, 0, ()) for kind in KINDS]
    + [(k, True, 0, ()) for k in ("lstm", "gru", "rnn")]
    + [(kind, kind != "mlp", 5, (DAY, 7 * DAY)) for kind in KINDS]
)


@pytest.mark.parametrize(("kind", "differences", "reference", "calendar"), VARIANTS)
def test_shapes_and_state_size(
    kind: Kind, differences: bool, reference: int, calendar: tuple[float, ...]
) -> None:
    model = tiny(kind, differences=differences, reference=reference, calendar=calendar)
    window = max(4, reference)
    expected_state = {"lstm": 2 * 2 * 6, "gru": 2 * 6, "rnn": 2 * 6, "mlp": window * 2}[kind]
    if kind != "mlp":
        expected_state += (2 if differences else 0) + reference
    assert model.state_size == expected_state
    assert model.takes_time == bool(calendar)
    for batch, steps in ((1, 1), (3, 7), (5, 2)):
        x = torch.randn(batch, steps, 2)
        forecast, state = model(x, model.initial_state().expand(batch, -1), times(batch, steps))
        assert forecast.shape == (batch, 3, 3)
        assert state.shape == (batch, expected_state)


@pytest.mark.parametrize(("kind", "differences", "reference", "calendar"), VARIANTS)
def test_step_by_step_equals_whole_sequence(
    kind: Kind, differences: bool, reference: int, calendar: tuple[float, ...]
) -> None:
    model = tiny(kind, differences=differences, reference=reference, calendar=calendar)
    with torch.no_grad():
        model.calibration.normal_(0.0, 2.0)  # calibrated quantiles are part of the contract
    x = 10 + 3 * torch.randn(4, 11, 2)
    time = times(4, 11)
    start = model.initial_state().expand(4, -1)
    with torch.no_grad():
        whole, whole_state = model(x, start, time)
        state = start
        for t in range(x.shape[1]):
            step, state = model(x[:, t : t + 1], state, time[:, t : t + 1])
        # forward_all's last step is the contract's forecast too.
        every = model.forward_all(x, start, time)
    torch.testing.assert_close(step, whole, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(state, whole_state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(every[:, -1], whole)
    assert bool(torch.all(whole.diff(dim=-1) >= 0))


@pytest.mark.parametrize("kind", KINDS)
def test_the_seasonal_reference_is_the_value_one_season_before_each_target(kind: Kind) -> None:
    """With a zero head, the median is the seasonal naive of the reference period."""
    model = tiny(kind, reference=5, target=0)
    with torch.no_grad():
        for p in model.head.parameters():
            p.zero_()
        x = torch.arange(12.0).reshape(1, 12, 1).repeat(1, 1, 2)
        forecast, state = model(x, model.initial_state().unsqueeze(0))
        every = model.forward_all(x, model.initial_state().unsqueeze(0))
    # After step 11, targets 12, 13, 14 take the values at 7, 8, 9.
    assert forecast[0, :, 1].tolist() == [7.0, 8.0, 9.0]
    # After step 6 (value 6): targets 7, 8, 9 take 2, 3, 4; the state starts from history.
    assert every[0, 6, :, 1].tolist() == [2.0, 3.0, 4.0]
    history = x[:, -model.context :]
    assert torch.equal(model.state_from_history(history)[:, -5:], state[:, -5:])


def test_calendar_features_come_from_the_time_input() -> None:
    model = tiny("gru", calendar=(DAY,))
    x = torch.full((1, 1, 2), 10.0)
    state = model.initial_state().unsqueeze(0)
    with torch.no_grad():
        noon, _ = model(x, state, torch.tensor([[1.77e9 + 0.5 * DAY]], dtype=torch.float64))
        next_noon, _ = model(x, state, torch.tensor([[1.77e9 + 1.5 * DAY]], dtype=torch.float64))
        night, _ = model(x, state, torch.tensor([[1.77e9]], dtype=torch.float64))
    torch.testing.assert_close(noon, next_noon, rtol=1e-5, atol=1e-5)  # a day later, same phase
    assert not torch.allclose(noon, night)
    with pytest.raises(ValueError, match="pass time"):
        model(x, state)


@pytest.mark.parametrize("kind", KINDS)
def test_quantiles_never_cross(kind: Kind) -> None:
    model = tiny(kind)
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_(0.0, 5.0)  # large random head weights: crossing would show
        model.calibration.normal_(0.0, 50.0)  # offsets large enough to cross without the fix
        forecast, _ = model(torch.randn(8, 5, 2) * 10, model.initial_state().expand(8, -1))
    assert bool(torch.all(forecast.diff(dim=-1) >= 0))


def test_rows_of_a_batch_are_independent() -> None:
    model = tiny("lstm")
    x = torch.randn(3, 6, 2)
    start = torch.randn(3, model.state_size) * 0.5
    with torch.no_grad():
        batch, _ = model(x, start)
        alone, _ = model(x[1:2], start[1:2])
    torch.testing.assert_close(batch[1:2], alone, rtol=1e-5, atol=1e-5)


def test_output_is_in_original_units_of_the_target() -> None:
    """An untrained head predicts a small change from the last observed target value."""
    model = tiny("gru", target=0)
    with torch.no_grad():
        for p in model.head.parameters():
            p.zero_()
        x = torch.full((1, 4, 2), 7.0)
        x[0, -1, 0] = 42.0
        forecast, _ = model(x, model.initial_state().unsqueeze(0))
    # Zero head: median = last target exactly, other quantiles offset by softplus(0) * std.
    median = forecast[0, :, 1]
    torch.testing.assert_close(median, torch.full((3,), 42.0))
    torch.testing.assert_close(forecast[0, :, 2] - median, torch.full((3,), 0.6931472 * 3.0))


def test_differenced_state_ends_with_the_last_observation() -> None:
    model = tiny("gru", differences=True)
    start = model.initial_state()
    assert start.tolist() == [0.0] * 12 + [10.0, -2.0]  # h of 2 layers, then the mean
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    _, state = model(x, start.unsqueeze(0))
    assert state[0, -2:].tolist() == [3.0, 4.0]
    # The same observation after a different previous one is a different input.
    other = start.clone()
    other[-2:] = torch.tensor([0.0, 0.0])
    a, _ = model(x[:, -1:], state)
    b, _ = model(x[:, -1:], torch.cat([state[:, :-2], torch.zeros(1, 2)], dim=1))
    assert not torch.allclose(a, b)


def test_mlp_starts_from_the_training_mean() -> None:
    model = tiny("mlp")
    assert model.initial_state().tolist() == [10.0, -2.0] * 4
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    _, state = model(x, model.initial_state().unsqueeze(0))
    assert state.tolist() == [[10.0, -2.0, 10.0, -2.0, 1.0, 2.0, 3.0, 4.0]]


def test_single_feature_and_one_layer() -> None:
    model = tiny("lstm", features=1, target=0, layers=1)
    forecast, state = model(torch.randn(2, 3, 1), torch.zeros(2, model.state_size))
    assert forecast.shape == (2, 3, 3)
    assert state.shape == (2, 12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_index": 2}, "target_index"),
        ({"quantiles": (0.1, 0.9)}, "0.5"),
        ({"std": [1.0, 0.0]}, "positive"),
        ({"mean": [1.0]}, "one value per feature"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "n_features": 2,
        "target_index": 0,
        "horizon": 2,
        "quantiles": QUANTILES,
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build("gru", **arguments)  # type: ignore[arg-type]


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        build("transformer", n_features=1, target_index=0, horizon=1, quantiles=QUANTILES)  # type: ignore[arg-type]
