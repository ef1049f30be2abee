"""fgjax.rl against NumPy loop ports of the release (tests/numpy_reference.py) and hand-worked
cases."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest

from fgjax import rl

TOL = dict(rtol=1e-5, atol=1e-5)


def ragged_batch(seed, batch=6, length=9):
    """Random float32 arrays and a prefix mask with ragged lengths: one row full, one of length
    1, the rest random; padded entries hold garbage so any leak shows."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, length - 1, size=batch)
    lengths[0], lengths[1] = length - 2, 1  # longest row shorter than T: columns past it
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.float32)
    draw = lambda: rng.normal(size=(batch, length)).astype(np.float32)
    return mask, draw


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shift_mean", [True, False])
def test_whiten_matches_numpy_loops(seed, shift_mean):
    mask, draw = ragged_batch(seed)
    x = draw() * 3.0 + 1.5
    for mode, port in (("standard", ref.whiten_standard), ("reference", ref.whiten_reference)):
        got = rl.masked_whiten(jnp.asarray(x), jnp.asarray(mask), shift_mean, mode=mode)
        np.testing.assert_allclose(np.asarray(got), port(x, mask, shift_mean), **TOL)


def test_whiten_by_hand():
    # x = [1, 2, 3 | pad 100]: masked mean 2, population variance (1 + 0 + 1) / 3 = 2/3.
    # standard: 1/sqrt(2/3) = 1.2247449 -> [-1.2247449, 0, 1.2247449, 0]; no shift adds 2 back.
    # reference: std s = sqrt(2/3) = 0.8164966, 1/sqrt(s) = 1/0.9036020 = 1.1066819;
    # shift: (x - 2) * 1.1066819 -> pad (100 - 2) * 1.1066819 = 108.4548275 (not re-masked);
    # no shift adds 2: [0.8933181, 2, 3.1066819, 110.4548275].
    x = jnp.array([[1.0, 2.0, 3.0, 100.0]])
    mask = jnp.array([[1, 1, 1, 0]])
    expect = {
        ("standard", True): [-1.2247449, 0.0, 1.2247449, 0.0],
        ("standard", False): [0.7752551, 2.0, 3.2247449, 0.0],
        ("reference", True): [-1.1066819, 0.0, 1.1066819, 108.4548275],
        ("reference", False): [0.8933181, 2.0, 3.1066819, 110.4548275],
    }
    for (mode, shift), want in expect.items():
        got = rl.masked_whiten(x, mask, shift_mean=shift, mode=mode)
        np.testing.assert_allclose(np.asarray(got)[0], want, rtol=1e-6, atol=1e-5)


def test_masked_mean_and_var():
    x = jnp.array([[1.0, 2.0, jnp.inf], [3.0, jnp.nan, jnp.nan]])
    mask = jnp.array([[1, 1, 0], [1, 0, 0]])
    assert float(rl.masked_mean(x, mask)) == pytest.approx(2.0)  # inf/NaN padding ignored
    np.testing.assert_allclose(rl.masked_mean(x, mask, axis=1), [1.5, 3.0])
    assert float(rl.masked_var(x, mask)) == pytest.approx(2.0 / 3.0)
    assert float(rl.masked_var(x, mask, unbiased=True)) == pytest.approx(1.0)


def test_unknown_modes_are_rejected():
    x, mask = jnp.ones((1, 2)), jnp.ones((1, 2))
    with pytest.raises(ValueError, match="whitening mode 'sqrt'"):
        rl.masked_whiten(x, mask, mode="sqrt")
    with pytest.raises(ValueError, match="GAE mode 'x'"):
        rl.gae(x, x, mask, 1.0, 0.95, mode="x")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5)])
def test_gae_matches_numpy_loops(seed, gamma, lam):
    mask, draw = ragged_batch(seed)
    rewards, values = draw(), draw()
    # Standard mode must ignore whatever sits in padding; feed garbage there.
    args = (jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(mask), gamma, lam)
    adv, ret = rl.gae(*args, mode="standard")
    want_adv, want_ret = ref.gae_standard(rewards, values, mask, gamma, lam)
    np.testing.assert_allclose(np.asarray(adv), want_adv, **TOL)
    np.testing.assert_allclose(np.asarray(ret), want_ret, **TOL)
    # Reference mode, as the release feeds it: values multiplied by the mask, rewards not.
    masked_values = values * mask
    args = (jnp.asarray(rewards), jnp.asarray(masked_values), jnp.asarray(mask), gamma, lam)
    adv, ret = rl.gae(*args, mode="reference")
    want_adv, want_ret = ref.gae_reference(rewards, masked_values, mask, gamma, lam)
    np.testing.assert_allclose(np.asarray(adv), want_adv, **TOL)
    np.testing.assert_allclose(np.asarray(ret), want_ret, **TOL)


def test_gae_by_hand():
    # gamma = 1, lam = 0.5; row 0 full (3 tokens), row 1 has 2 tokens; column 3 is past every
    # row's end. Row 0: r = [1, 0, 2], V = [0.5, 1, 1.5]:
    #   t2: delta = 2 + 0 - 1.5 = 0.5, A = 0.5
    #   t1: delta = 0 + 1.5 - 1 = 0.5, A = 0.5 + 0.5 * 0.5 = 0.75
    #   t0: delta = 1 + 1 - 0.5 = 1.5, A = 1.5 + 0.5 * 0.75 = 1.875; returns A + V.
    # Row 1: r = [1, 1 | 5, 7], V = [0.5, 1 | 0, 0] (values masked, rewards not).
    #   standard stops after t1: t1: delta = 1 + 0 - 1 = 0, A = 0; t0: delta = 1 + 1 - 0.5 = 1.5,
    #   A = 1.5. Reference runs to the longest row (3 columns) and leaks the pad reward 5:
    #   t2: A = 5; t1: delta = 0, A = 0 + 0.5 * 5 = 2.5; t0: A = 1.5 + 0.5 * 2.5 = 2.75;
    #   column 3 (past the longest row) gets A = 0 in both modes, though its reward is 7.
    rewards = jnp.array([[1.0, 0.0, 2.0, 7.0], [1.0, 1.0, 5.0, 7.0]])
    values = jnp.array([[0.5, 1.0, 1.5, 0.0], [0.5, 1.0, 0.0, 0.0]])
    mask = jnp.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    adv, ret = rl.gae(rewards, values, mask, 1.0, 0.5, mode="standard")
    np.testing.assert_allclose(adv, [[1.875, 0.75, 0.5, 0.0], [1.5, 0.0, 0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(ret, [[2.375, 1.75, 2.0, 0.0], [2.0, 1.0, 0.0, 0.0]], atol=1e-6)
    adv, ret = rl.gae(rewards, values, mask, 1.0, 0.5, mode="reference")
    np.testing.assert_allclose(adv, [[1.875, 0.75, 0.5, 0.0], [2.75, 2.5, 5.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(ret, [[2.375, 1.75, 2.0, 0.0], [3.25, 3.5, 5.0, 0.0]], atol=1e-6)


def test_reference_pipeline_leaks_padding_and_standard_does_not():
    """Whiten (no shift) -> GAE -> whiten, as the trainer chains them, against the NumPy chain;
    then the property that separates the modes: padding changes reference advantages only."""
    mask, draw = ragged_batch(7)
    rewards, values = draw(), draw() * mask

    def chain(r, mode):
        r = rl.masked_whiten(r, mask, shift_mean=False, mode=mode)
        adv, ret = rl.gae(r, values, mask, 1.0, 0.95, mode=mode)
        return rl.masked_whiten(adv, mask, mode=mode), ret

    penalized = rewards * mask  # dense rewards are 0 on padding
    got_adv, got_ret = chain(jnp.asarray(penalized), "reference")
    white = ref.whiten_reference(penalized, mask, shift_mean=False)
    want_adv, want_ret = ref.gae_reference(white, values, mask, 1.0, 0.95)
    want_adv = ref.whiten_reference(want_adv, mask)
    np.testing.assert_allclose(np.asarray(got_adv), want_adv, **TOL)
    np.testing.assert_allclose(np.asarray(got_ret), want_ret, **TOL)

    shorter = 1  # a one-token row, shorter than the longest one
    last = int(mask[shorter].sum()) - 1
    garbage = penalized + (1 - mask) * 50.0  # change only padded rewards
    ref_clean, _ = chain(jnp.asarray(penalized), "reference")
    std_clean, _ = chain(jnp.asarray(penalized), "standard")
    std_dirty, _ = chain(jnp.asarray(garbage), "standard")
    np.testing.assert_allclose(np.asarray(std_clean), np.asarray(std_dirty), atol=1e-6)
    # The leak: even with zero padded rewards the whitened pad value (0 - mean)/sqrt(s) + mean
    # reaches the last real token, so reference and standard advantages there differ.
    white_pad = white[shorter, last + 1]
    assert white_pad != pytest.approx(0.0, abs=1e-3)
    raw_ref, _ = rl.gae(jnp.asarray(white), values, mask, 1.0, 0.95, mode="reference")
    raw_std, _ = rl.gae(jnp.asarray(white), values, mask, 1.0, 0.95, mode="standard")
    gap = float(raw_ref[shorter, last] - raw_std[shorter, last])
    assert gap == pytest.approx(0.95 * float(raw_ref[shorter, last + 1]), rel=1e-5)
    assert abs(float(ref_clean[shorter, last] - std_clean[shorter, last])) > 1e-3


@pytest.mark.parametrize("seed", [0, 1])
def test_kl_penalty_matches_numpy_loops(seed):
    mask, draw = ragged_batch(seed)
    rewards, logp, ref_logp = draw() * mask, draw(), draw()
    logp = np.where(mask > 0, logp, -1e9).astype(np.float32)  # the release's padded log-probs
    got = rl.kl_penalized_rewards(*map(jnp.asarray, (rewards, logp, ref_logp, mask)), 0.3)
    want = ref.kl_penalized_rewards(rewards, logp, ref_logp, mask, 0.3)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), w, **TOL)


def test_kl_penalty_by_hand():
    # kl = logp - ref = [-1 + 1.5, -2 + 1, pad] = [0.5, -1, 0];
    # penalized = r - 0.3 kl = [0 - 0.15, 0.3 + 0.3, 0.2 - 0] = [-0.15, 0.6, 0.2].
    penalized, kl = rl.kl_penalized_rewards(
        jnp.array([[0.0, 0.3, 0.2]]),
        jnp.array([[-1.0, -2.0, -1e9]]),
        jnp.array([[-1.5, -1.0, -3.0]]),
        jnp.array([[1, 1, 0]]),
        0.3,
    )
    np.testing.assert_allclose(kl, [[0.5, -1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(penalized, [[-0.15, 0.6, 0.2]], atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_losses_match_numpy_loops(seed):
    mask, draw = ragged_batch(seed)
    logp, old_logp = draw() * 0.3 - 2.0, draw() * 0.3 - 2.0
    old_logp = np.where(mask > 0, old_logp, -1e9).astype(np.float32)  # huge pads: no NaN
    advantages, values, old_values, returns = draw(), draw(), draw(), draw()
    j = lambda *xs: [jnp.asarray(x) for x in xs]
    got = rl.ppo_policy_loss(*j(logp, old_logp, advantages, mask), 0.2)
    want = ref.ppo_policy_loss(logp, old_logp, advantages, mask, 0.2)
    np.testing.assert_allclose(np.asarray(got), want, **TOL)
    got = rl.ppo_value_loss(*j(values, old_values, returns, mask), 0.2)
    want = ref.ppo_value_loss(values, old_values, returns, mask, 0.2)
    np.testing.assert_allclose(np.asarray(got), want, **TOL)
    got = rl.ppo_diagnostics(*j(logp, old_logp, values, old_values, mask), 0.2, 0.2)
    want = ref.ppo_diagnostics(logp, old_logp, values, old_values, mask, 0.2, 0.2)
    np.testing.assert_allclose(np.asarray(got), want, **TOL)
    assert 0 < float(got[0]) < 1 and 0 < float(got[1]) < 1  # both branches exercised


def test_losses_by_hand():
    # clip 0.2. Policy, per token (ratio r, advantage A): max(-A r, -A clip(r, 0.8, 1.2))
    #   r = 1.5, A = 2:  max(-3.0, -2.4) = -2.4
    #   r = 0.5, A = 1:  max(-0.5, -0.8) = -0.5
    #   r = 1.5, A = -1: max(1.5, 1.2) = 1.5;  4th token is padding.
    #   sum = -1.4, count 3.
    lp = jnp.array([[math.log(1.5), math.log(0.5), math.log(1.5), 0.0]])
    old = jnp.zeros((1, 4))
    adv = jnp.array([[2.0, 1.0, -1.0, 100.0]])
    mask = jnp.array([[1, 1, 1, 0]])
    loss, count = rl.ppo_policy_loss(lp, old, adv, mask, 0.2)
    assert (float(loss), float(count)) == (pytest.approx(-1.4, abs=1e-6), 3.0)
    # Value (v, v_old, R): 0.5 max((v - R)^2, (clip(v, v_old +- 0.2) - R)^2)
    #   (1.0, 0.5, 2.0): clipped v 0.7: max(1, 1.69) = 1.69 -> 0.845
    #   (0.0, 0.1, 0.0): clipped v 0.0 (inside): 0 -> 0
    #   (3.0, 2.0, 2.5): clipped v 2.2: max(0.25, 0.09) = 0.25 -> 0.125;  sum 0.97, count 3.
    v = jnp.array([[1.0, 0.0, 3.0, 9.0]])
    v_old = jnp.array([[0.5, 0.1, 2.0, 0.0]])
    ret = jnp.array([[2.0, 0.0, 2.5, 0.0]])
    loss, count = rl.ppo_value_loss(v, v_old, ret, mask, 0.2)
    assert (float(loss), float(count)) == (pytest.approx(0.97, abs=1e-6), 3.0)
    # Diagnostics: ratios 1.5, 0.5, 1.5 all outside 1 +- 0.2 -> 1; values moved 0.5, 0.1, 1.0
    # -> 2 of 3 beyond 0.2; approx KL = mean(0.5 log_ratio^2)
    #   = 0.5 (0.4054651^2 * 2 + 0.6931472^2) / 3 = 0.5 (0.3287989 + 0.4804530) / 3 = 0.1348753.
    clipfrac, vclipfrac, kl = rl.ppo_diagnostics(lp, old, v, v_old, mask, 0.2, 0.2)
    np.testing.assert_allclose([clipfrac, vclipfrac, kl], [1.0, 2 / 3, 0.1348753], atol=1e-6)


def test_logits_helpers():
    # Two-way logits [0, ln 3]: p = [1/4, 3/4]; entropy = -(1/4 ln 1/4 + 3/4 ln 3/4) = 0.5623351.
    logits = jnp.array([[[0.0, math.log(3.0)], [0.0, 0.0]]], jnp.bfloat16)
    tokens = jnp.array([[1, 0]])
    logp = rl.logprobs_from_logits(logits, tokens)
    assert logp.dtype == jnp.float32
    np.testing.assert_allclose(logp, [[math.log(0.75), math.log(0.5)]], atol=3e-3)
    ent = rl.entropy_from_logits(logits)
    np.testing.assert_allclose(ent, [[0.5623351, math.log(2.0)]], atol=3e-3)


def test_everything_jits_and_gae_has_no_time_loop():
    mask, draw = ragged_batch(3)
    rewards, values = jnp.asarray(draw()), jnp.asarray(draw())
    maskj = jnp.asarray(mask)
    for mode in ("standard", "reference"):
        eager = rl.gae(rewards, values, maskj, 1.0, 0.95, mode=mode)
        gae_jit = jax.jit(rl.gae, static_argnames="mode")
        jitted = gae_jit(rewards, values, maskj, 1.0, 0.95, mode=mode)
        np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), atol=1e-6)
        w_eager = rl.masked_whiten(rewards, maskj, False, mode)
        w_jit = jax.jit(rl.masked_whiten, static_argnums=(2, 3))(rewards, maskj, False, mode)
        np.testing.assert_allclose(np.asarray(w_eager), np.asarray(w_jit), atol=1e-6)
    # The traced program does not grow with T: the time recursion is one scan.
    sizes = []
    for length in (4, 64):
        x = jnp.ones((2, length))
        jaxpr = jax.make_jaxpr(lambda r, v, m: rl.gae(r, v, m, 1.0, 0.95))(x, x, x)
        sizes.append(len(jaxpr.jaxpr.eqns))
        assert any(e.primitive.name == "scan" for e in jaxpr.jaxpr.eqns)
    assert sizes[0] == sizes[1]
    jitted_losses = jax.jit(
        lambda *a: (rl.ppo_policy_loss(*a[:4], 0.2), rl.ppo_value_loss(*a[4:], 0.2))
    )
    out = jitted_losses(rewards, values, rewards, maskj, values, rewards, values, maskj)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(out))


def test_policy_loss_gradient_is_finite_with_huge_padded_logprobs():
    lp = jnp.array([[-1.0, -2.0, -3.0]])
    old = jnp.array([[-1.2, -1.9, -1e9]])  # padding held at the release's huge negative
    mask = jnp.array([[1, 1, 0]])
    grad = jax.grad(lambda x: rl.ppo_policy_loss(x, old, jnp.ones((1, 3)), mask, 0.2)[0])(lp)
    assert np.isfinite(np.asarray(grad)).all() and float(grad[0, 2]) == 0.0


def test_sharded_batch_gives_the_same_numbers():
    """Statistics are global over the batch: rows split over 8 devices change nothing."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = np.array(jax.devices()[:8])
    assert devices.size == 8, "tests/conftest.py forces 8 CPU devices"
    mask, draw = ragged_batch(5, batch=8)
    rewards, values = draw(), draw() * mask

    def advantages(r, v, m):
        r = rl.masked_whiten(r, m, shift_mean=False, mode="reference")
        adv, ret = rl.gae(r, v, m, 1.0, 0.95, mode="reference")
        return rl.masked_whiten(adv, m, mode="reference"), ret

    rows = NamedSharding(Mesh(devices, ("data",)), PartitionSpec("data", None))
    sharded = [jax.device_put(jnp.asarray(x), rows) for x in (rewards, values, mask)]
    got = jax.jit(advantages)(*sharded)
    want = jax.jit(advantages)(*map(jnp.asarray, (rewards, values, mask)))
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6, atol=1e-6)
