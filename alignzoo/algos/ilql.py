"""ILQL: Implicit Language Q-Learning (Snell et al. 2022), the zoo's offline-RL member.

Learns from a fixed dataset of completions with rewards (no sampling during training); math and oracles in
docs/algorithms.md#ilql. Heads on the policy's final hidden states h_j (position j acts by predicting token j+1):
two Q heads (MLP d -> 2d -> |V|) and a V head (d -> 2d -> 1). The target network (``TargetNetwork``) is a frozen
copy of the transformer body with target Q heads Qbar_k on *its* hidden states, as in the paper.

    Q_hat_j = r_j + gamma * V(s_{j+1}) * notdone_{j+1}              (V detached; no bootstrap at the terminal state)
    L_Q     = sum_k sum_j m_j (Q_k(s_j, a_j) - Q_hat_j)^2 / N
    L_V     = sum_j m_j |tau - 1(u_j < 0)| u_j^2 / N,   u_j = min_k Qbar_k(s_j, a_j) - V(s_j)   (expectile)
    L_CQL   = sum_k sum_j m_j [logsumexp_a Q_k(s_j, a) - Q_k(s_j, a_j)] / N
    L_AWAC  = sum_j m_j exp(beta_awac * u_j) CE(lm_logits_j, a_j) / N      (weights detached; beta_awac = 0: BC)
    L       = L_Q + L_V + cql_scale * L_CQL + awac_scale * L_AWAC,      N = max(1, sum m)
    target sync every `steps_for_target_q_sync` optimizer steps: theta_bar <- alpha * theta + (1 - alpha) * theta_bar
    (target body and target Q heads; the paper: alpha 0.005 after every step, a lag of ~200 steps)
    decoding: score = log_softmax(lm_logits) + beta * (min_k Q_k(s, .) - V(s)), top-k, softmax

All losses also train the transformer body (the heads share it, as in trlX); the LM head is the BC policy.

Data: every completion of the task's feedback dataset with its reward (the run's reward model, or the task's
gold reward as an oracle ablation: ``reward_source``), standardized over the dataset ((R - mean) / (std + eps),
unbiased std), placed on the last completion token (EOS when the completion ended; a completion cut at the
length limit keeps no EOS and ends on its last token). The end of every completion is terminal. A batch is
``train.batch_size`` prompts with all their completions (K = 2: the sequences of a DPO batch of pairs).

Two presets. ``algo=ilql`` follows the paper (the original code, ``Sea-Snell/Implicit-Language-Q-Learning``):
target transformer + target heads Polyak-averaged with alpha 0.005 every step, double Q, the CQL term (0.25, its
toxicity value; 1e-4 to 1 per task), AWAC/BC weight 1, tau 0.7, gamma 0.99, decoding beta 8. Departures: one
transformer for policy and Q/V (trlX's structure; the original may keep a separate policy transformer), decoding
with the online Q heads (the rollout engine hands the decoding step the policy body's hidden state, which the
target heads do not read), zero-initialised head outputs and lr 2e-3 for tiny models trained from scratch.

``algo=ilql_light`` is the zoo's earlier variant, kept because it is cheaper (no target transformer forward) and
learns within the quick budget; with barely lagging targets and no CQL it is IQL plus behaviour cloning. Its
settings depart from trlX (``CarperAI/trlx``: target *heads* only) where trlX's do not learn in the zoo's budgets
(measured on task=sentiment, budget=quick: 50 steps of 32 prompts x 2 completions, a 4-layer model trained from
scratch; gain = gold reward over the SFT policy, mean of 3 seeds unless said):
- trlX's loss weights and sync (awac 1, cql 0.1, alpha 0.001 every 5 steps; lr 2e-3, beta 8) gain +0.01
  [-0.09, 0.11]: the BC and CQL gradients dominate the shared transformer and the Q/V heads only start to rank
  tokens after ~200 steps (awac 1, cql 0, 400 steps: +0.61 on seed 0). ``awac_scale`` 0.05 lets Q/V shape the
  features within 50 steps (beta 8: awac 0.1 +0.06, 0.05 +0.42; awac 0 destroys the LM, KL > 100), and
  ``cql_scale`` 0 (0.01 lowered the gain from +0.38 to +0.27 and raised the KL from 6.5 to 9.4);
- the Q/V heads' output layers start at zero (``make_head``): untrained actions keep Q = 0, the mean of the
  standardized returns, and decoding starts as the BC policy. With trlX's random init the untrained Q values
  are noise that beta amplifies (seed 0: gold did not rise with beta);
- ``alpha`` 0.5 after every step (trlX's 0.001 every 5 steps leaves the targets at their initialization for
  thousands of steps; alpha 0.3 vs 1: +0.33 vs +0.42, within the noise); ``lr`` 2e-3 (trlX 5e-5 for GPT-2);
- decoding ``beta`` 8, the original's toxicity value (trlX 1): gold rises with beta (gain +0.03 / +0.10 /
  +0.22 / +0.32 at beta 0 / 1 / 4 / 8) while the KL barely moves (6.5 / 6.5 / 6.7 / 7.3 nats: most of it is
  the drift of the shared transformer under the Q/V gradients, with top-k 20 at every beta).
trlX's settings: ``algo=ilql_light algo.awac_scale=1 algo.cql_scale=0.1 algo.alpha=0.001
algo.steps_for_target_q_sync=5 algo.beta=1 algo.lr=5e-5`` (and ``train.betas=[0.9,0.95]``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignzoo import checkpoint, distributed
from alignzoo.errors import AlignzooError
from alignzoo.hookspecs import hookimpl
from alignzoo.ops import masked_mean, pad_completions
from alignzoo.rollout import filter_logits, forward
from alignzoo.training import MicroLoss, Stepper, infinite_batches, loop, optimizer_step, token_weights

REWARD_SOURCES = ("auto", "reward", "gold")


@dataclass
class ILQLConfig:
    name: str = "ilql"
    NEEDS_REWARD = True  # class attribute: with no reward= the run trains a learned reward model (and gates it)
    beta: float = 8.0  # decoding: weight of the advantage min_k Qbar - V added to the log-probs (0: BC policy)
    top_k: int = 20  # decoding: keep the k best-scoring tokens (0: all)
    tau: float = 0.7  # expectile of V's regression on the target Q (0.5: the mean; -> 1: the max)
    gamma: float = 0.99  # discount per token
    cql_scale: float = 0.25  # weight of the CQL term (pushes down Q of actions the data did not take); the
    # paper's toxicity value (1e-4 to 1 per task); trlX 0.1
    awac_scale: float = 1.0  # weight of the AWAC/BC term on the LM head; the paper and trlX 1
    beta_awac: float = 0.0  # AWAC weights exp(beta_awac * (Qbar - V)); 0: plain behaviour cloning (trlX default)
    alpha: float = 0.005  # Polyak rate of the target network at each sync (1: hard copy); the paper's 0.005
    steps_for_target_q_sync: int = 1  # optimizer steps between target syncs (the paper: every step; trlX 5)
    two_qs: bool = True  # double Q: two Q heads, targets and decoding use their elementwise min
    target_transformer: bool = True  # the target network is a Polyak copy of the transformer body *and* the Q
    # heads (the paper); False: target Q heads only, on the online body's hidden states (trlX, algo=ilql_light)
    lr: float = 2e-3  # learning rate of the transformer and the heads; trlX 5e-5 (GPT-2)
    reward_source: str = "auto"  # auto (the run's reward: a learned reward model unless reward= says otherwise,
    # else the gold reward) | reward | gold (the oracle ablation)
    max_length: Optional[int] = None  # prompt+completion tokens; None: the model's context length
    max_prompt_length: Optional[int] = None  # prompt tokens kept (from the end); None: half of max_length

    def problems(self) -> list[str]:
        out = []
        if not 0.0 < self.tau < 1.0:
            out.append(f"tau must be in (0, 1) (got {self.tau}); try 0.7")
        if not 0.0 <= self.gamma <= 1.0:
            out.append(f"gamma must be in [0, 1] (got {self.gamma})")
        if not 0.0 <= self.alpha <= 1.0:
            out.append(f"alpha must be in [0, 1] (got {self.alpha})")
        if self.steps_for_target_q_sync < 1:
            out.append(f"steps_for_target_q_sync must be >= 1 (got {self.steps_for_target_q_sync})")
        if self.top_k < 0:
            out.append(f"top_k must be >= 0 (got {self.top_k})")
        if self.beta < 0 or self.cql_scale < 0 or self.awac_scale < 0:
            out.append("beta, cql_scale and awac_scale must be >= 0")
        if self.lr <= 0:
            out.append(f"lr must be > 0 (got {self.lr})")
        if self.reward_source not in REWARD_SOURCES:
            out.append(f"reward_source must be one of {', '.join(REWARD_SOURCES)} (got {self.reward_source!r})")
        return out


# -- pure losses -----------------------------------------------------------------------------------------------

def expectile_loss(diff: Tensor, *, tau: float) -> Tensor:
    """Elementwise expectile loss |tau - 1(diff < 0)| * diff^2, no reduction (same shape as ``diff``).

    ``diff`` = target - V: positive residuals (V below its target) weigh tau, negative ones 1 - tau; tau = 0.5 is
    half the squared error. The caller reduces (ILQL: masked sum / N).
    """
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return weight * diff.pow(2)


def cql_loss(q_logits: Tensor, actions: Tensor, mask: Tensor) -> Tensor:
    """Masked mean of logsumexp_a Q(s, a) - Q(s, a_data): ``[B, N, V], [B, N], [B, N] -> scalar``.

    The cross-entropy of softmax(Q) against the data action; log |V| when Q is uniform over the vocabulary."""
    per_token = torch.logsumexp(q_logits, -1) - q_logits.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return masked_mean(per_token, mask)


def q_targets(rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float) -> Tensor:
    """Q_hat_j = r_j + gamma * V(s_{j+1}) * notdone_{j+1}, detached: ``[B, N], [B, N+1], [B, N] -> [B, N]``.

    The next state is non-terminal when it acts too (``mask[j+1] == 1``); after the last action it is terminal,
    so the last action's target is its reward alone."""
    notdone_next = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1).to(values.dtype)
    return (rewards + gamma * values[:, 1:].detach() * notdone_next).detach()


def ilql_loss(q_logits: Sequence[Tensor], target_q_logits: Sequence[Tensor], values: Tensor, lm_logits: Tensor,
              actions: Tensor, rewards: Tensor, mask: Tensor, *, gamma: float, tau: float, cql_scale: float,
              awac_scale: float, beta_awac: float) -> tuple[Tensor, dict[str, Tensor]]:
    """The ILQL loss of one batch -> (loss, metrics). Shapes: B rows, N = T - 1 positions, V tokens.

    q_logits, target_q_logits: one ``[B, N, V]`` per Q head: Q(s_j, .) at position j, which predicts token j+1;
    values ``[B, N + 1]``: V(s_j) at every position (the last is the state after the final token);
    lm_logits ``[B, N, V]``; actions ``[B, N]`` (the tokens j+1); rewards ``[B, N]``; mask ``[B, N]``: 1 on the
    completion's actions (contiguous per row). Every term is a sum over masked positions divided by
    N = max(1, sum mask); the equations are in the module docstring. Metrics: loss_q, loss_v, loss_cql,
    loss_awac, q, target_q, v, advantage (target_q - v), awac_weight (masked means).
    """
    m = mask.to(values.dtype)
    n = m.sum().clamp(min=1)
    pick = lambda q: q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # noqa: E731
    qs = [pick(q) for q in q_logits]
    target_q = torch.stack([pick(q) for q in target_q_logits]).min(0).values.detach()  # double Q: elementwise min
    v = values[:, :-1]
    q_hat = q_targets(rewards, values, mask, gamma=gamma)
    loss_q = sum(((q - q_hat).pow(2) * m).sum() / n for q in qs)
    adv = target_q - v
    loss_v = (expectile_loss(adv, tau=tau) * m).sum() / n
    loss_cql = sum(cql_loss(q, actions, mask) for q in q_logits)  # cql_loss divides by the same N
    weight = torch.exp(beta_awac * adv).detach()
    ce = F.cross_entropy(lm_logits.reshape(-1, lm_logits.size(-1)), actions.reshape(-1), reduction="none")
    loss_awac = (weight * ce.view_as(actions) * m).sum() / n
    loss = loss_q + loss_v + cql_scale * loss_cql + awac_scale * loss_awac
    mean = lambda x: (x.detach() * m).sum() / n  # noqa: E731
    metrics = {"loss_q": loss_q.detach(), "loss_v": loss_v.detach(), "loss_cql": loss_cql.detach(),
               "loss_awac": loss_awac.detach(), "q": mean(qs[0]), "target_q": mean(target_q), "v": mean(v),
               "advantage": mean(adv), "awac_weight": mean(weight)}
    return loss, metrics


def standardize(returns: Tensor, eps: float = 1e-8) -> Tensor:
    """(R - mean) / (std + eps) over the dataset, with the unbiased std (as trlX)."""
    returns = returns.float()
    std = returns.std() if returns.numel() > 1 else returns.new_tensor(0.0)
    return (returns - returns.mean()) / (std + eps)


# -- heads, target sync, decoding ------------------------------------------------------------------------------

def make_head(d: int, out: int, *, zero_init: bool = True) -> nn.Module:
    """trlX's ``make_head``: d -> 2d -> out with a ReLU; ``zero_init`` zeroes the output layer (trlX: random)."""
    head = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, out))
    if zero_init:
        nn.init.zeros_(head[2].weight)
        nn.init.zeros_(head[2].bias)
    return head


def polyak_update(target: nn.Module, source: nn.Module, alpha: float) -> None:
    """target <- alpha * source + (1 - alpha) * target, parameter by parameter (alpha = 1: a hard copy)."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.mul_(1.0 - alpha).add_(s, alpha=alpha)


class ILQLHeads(nn.Module):
    """Q heads (one or two), their frozen target copies, and the V head on hidden states ``[..., d]``."""

    def __init__(self, d: int, vocab: int, two_qs: bool = True):
        super().__init__()
        self.q_heads = nn.ModuleList(make_head(d, vocab) for _ in range(2 if two_qs else 1))
        self.target_q_heads = copy.deepcopy(self.q_heads).requires_grad_(False)
        self.v_head = make_head(d, 1)

    def forward(self, hidden: Tensor, target_hidden: Optional[Tensor] = None
                ) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """-> (Q logits per head ``[..., V]``, target Q logits per head (no grad), V ``[...]``). The target heads
        read ``target_hidden`` (the target transformer's hidden states) when given, else ``hidden``."""
        hidden = hidden.to(self.v_head[0].weight.dtype)
        with torch.no_grad():
            inputs = hidden if target_hidden is None else target_hidden.to(hidden.dtype)
            targets = [h(inputs) for h in self.target_q_heads]
        return [h(hidden) for h in self.q_heads], targets, self.v_head(hidden).squeeze(-1)

    def sync_target_q_heads(self, alpha: float) -> None:
        for target, head in zip(self.target_q_heads, self.q_heads):
            polyak_update(target, head, alpha)


def decode_scores(logits: Tensor, target_q_logits: Sequence[Tensor], values: Tensor, *, beta: float,
                  top_k: int) -> Tensor:
    """log_softmax(logits) + beta * (min_k Qbar_k - V), then -inf outside the top-k: ``[B, V] -> [B, V]``.

    softmax of the result is pi(a|s) ∝ pi_beta(a|s) exp(beta (Q(s,a) - V(s))) on the top-k; V(s) shifts every
    token equally, so it changes which tokens are kept and their probabilities not at all."""
    q = torch.stack(list(target_q_logits)).min(0).values
    score = torch.log_softmax(logits.float(), -1) + beta * (q.float() - values.float().unsqueeze(-1))
    return filter_logits(score, top_k=top_k)


class TargetNetwork:
    """The paper's target network: a frozen copy of the transformer body (``body``) under the target Q heads of
    ``heads``; both follow the online network by Polyak averaging (``sync``). ``body`` None: target heads only,
    on the online body's hidden states (trlX; ``algo=ilql_light``)."""

    def __init__(self, heads: ILQLHeads, body: Optional[nn.Module]):
        self.heads, self.body = heads, body

    @classmethod
    def of(cls, model: nn.Module, heads: ILQLHeads, *, with_body: bool) -> "TargetNetwork":
        body = copy.deepcopy(model).eval().requires_grad_(False) if with_body else None
        return cls(heads, body)

    @torch.no_grad()
    def hidden(self, input_ids: Tensor, attention_mask: Tensor) -> Optional[Tensor]:
        """The target body's last hidden states ``[B, T, d]`` (None without a target body)."""
        if self.body is None:
            return None
        return forward(self.body, input_ids, attention_mask, cache=False, hidden=True, keep=1)[2]

    def sync(self, model: nn.Module, alpha: float) -> None:
        """theta_bar <- alpha * theta + (1 - alpha) * theta_bar for the target Q heads and the target body."""
        self.heads.sync_target_q_heads(alpha)
        if self.body is not None:
            polyak_update(self.body, model, alpha)


class ILQLDecoding:
    """``Policy.adjust_logits`` for ILQL: the rollout engine calls it with the logits and last hidden state of
    the position being decoded; since top-k happens here, the engine's log-probs are the sampling distribution's."""

    def __init__(self, heads: ILQLHeads, *, beta: float, top_k: int, online_q: bool = False):
        self.heads, self.beta, self.top_k, self.online_q = heads, beta, top_k, online_q

    @torch.no_grad()
    def __call__(self, logits: Tensor, hidden: Tensor) -> Tensor:
        qs, targets, values = self.heads(hidden)
        # with a target transformer, the target heads read features the decoding body does not compute: the
        # online Q heads (trained on this body's hidden states) score the tokens instead
        return decode_scores(logits, qs if self.online_q else targets, values, beta=self.beta, top_k=self.top_k)


# -- data ------------------------------------------------------------------------------------------------------

@dataclass
class Batch:
    input_ids: Tensor  # [B, T] prompt + completion, right-padded
    attention_mask: Tensor  # [B, T]
    mask: Tensor  # [B, T-1] 1 where position j's action (token j+1) is a completion token
    rewards: Tensor  # [B, T-1] the standardized return on the last action, 0 elsewhere


def completions_with_rewards(ctx: Any, source: str) -> tuple[list[str], list[str], list[bool], list[int], Tensor]:
    """Every completion of the task's feedback dataset: prompts, completions, ended, group (the index of its
    prompt row) and the raw rewards ``Tensor[n]``."""
    task = ctx.task
    data = ctx.ranking_data()  # the pipeline's feedback, when the labeler made one
    if data is not None:
        prompts = [p for p, cs in zip(data["prompt"], data["completions"]) for _ in cs]
        groups = [i for i, cs in enumerate(data["completions"]) for _ in cs]
        completions = [c for cs in data["completions"] for c in cs]
        ended = [bool(e) for es in data["ended"] for e in es]
    elif hasattr(task, "preference_data"):
        data = task.preference_data(ctx.policy)
        prompts = list(data["prompt"]) * 2
        completions = list(data["chosen"]) + list(data["rejected"])
        ended = [True] * len(completions)
        groups = list(range(len(data["prompt"]))) * 2
    else:
        raise AlignzooError(f"algo=ilql needs completions to learn from, but task={task.name} has neither ranking "
                            "nor preference data; pick a task with feedback (e.g. task=sentiment)")
    scorer = ctx.reward.score if source == "reward" else task.gold.score
    scores = [scorer(prompts[i:i + 256], completions[i:i + 256], ended[i:i + 256])
              for i in range(0, len(prompts), 256)]
    raw = torch.cat([torch.as_tensor(s, dtype=torch.float32).cpu() for s in scores])
    return prompts, completions, ended, groups, raw


Example = tuple[list[int], int, float]  # (prompt + completion ids, prompt length, return)


def tokenize(policy: Any, prompts: list[str], completions: list[str], ended: list[bool], groups: list[int],
             returns: Tensor, *, max_length: int, max_prompt_length: int) -> list[list[Example]]:
    """Examples grouped by prompt row (a batch takes whole groups: a prompt with its K completions); EOS only
    when the completion ended; long prompts keep their end, long completions are cut (the return then sits on
    the last kept token)."""
    out: dict[int, list[Example]] = {}
    for p, c, g, r in zip(policy.encode_prompts(prompts), policy.encode_completions(completions, ended), groups,
                          returns.tolist()):
        p = p[-max_prompt_length:]
        c = c[:max_length - len(p)]
        if c:
            out.setdefault(g, []).append((p + c, len(p), float(r)))
    return list(out.values())


def collate(examples: list[Example], pad_id: int, device: Any) -> Batch:
    ids, attn, actions = pad_completions([seq[:p] for seq, p, _ in examples], [seq[p:] for seq, p, _ in examples],
                                         pad_id)
    rewards = torch.zeros((len(examples), ids.size(1) - 1))
    for i, (seq, _, r) in enumerate(examples):
        rewards[i, len(seq) - 2] = r
    # position j acts by predicting token j+1: the step mask is the completion mask of the labels ids[:, 1:]
    return Batch(ids.to(device), attn.to(device), actions[:, 1:].float().to(device), rewards.to(device))


# -- training --------------------------------------------------------------------------------------------------

def _reward_source(cfg: ILQLConfig, ctx: Any) -> str:
    source = cfg.reward_source
    if source == "auto":
        source = "reward" if ctx.reward is not None else "gold"
    if source == "reward" and ctx.reward is None:
        raise AlignzooError("algo.reward_source=reward but the run has no reward; pick one (reward=<name>) or use "
                            "algo.reward_source=gold for the oracle ablation")
    if source == "gold" and getattr(ctx.task, "gold", None) is None:
        raise AlignzooError(f"algo=ilql needs rewards: the run has no reward and task={ctx.task.name} no gold "
                            "reward; pick one with reward=<name>")
    return source


def train(cfg: ILQLConfig, ctx: Any) -> Any:
    """Fit Q, V and the BC head on the task's scored completions; return the policy decoding with beta (Q - V)."""
    policy, tc = ctx.policy, ctx.train
    source = _reward_source(cfg, ctx)
    prompts, completions, ended, groups, raw = completions_with_rewards(ctx, source)
    what = "the run's reward" if source == "reward" else "the task's gold reward (oracle ablation)"
    ctx.note(f"ilql: {len(completions)} completions scored by {what}; raw reward mean {float(raw.mean()):.3f}, "
             f"std {float(raw.std()):.3f} (standardized)")
    max_length = cfg.max_length or policy.max_length
    examples = tokenize(policy, prompts, completions, ended, groups, standardize(raw), max_length=max_length,
                        max_prompt_length=cfg.max_prompt_length or max_length // 2)
    if not examples:
        raise AlignzooError("algo=ilql: no completion has a token to learn from")

    vocab = policy.model.get_output_embeddings().weight.size(0)
    heads = ILQLHeads(policy.model.config.hidden_size, vocab, cfg.two_qs).to(policy.device)
    target = TargetNetwork.of(policy.model, heads, with_body=cfg.target_transformer)
    decoding = replace(policy, name=cfg.name, adjust_logits=ILQLDecoding(heads, beta=cfg.beta, top_k=cfg.top_k,
                                                                         online_q=cfg.target_transformer))
    stepper = Stepper.create([*policy.model.parameters(), *heads.parameters()], cfg.lr, tc)
    batches = infinite_batches(len(examples), tc.batch_size // tc.grad_accum, ctx.seed)
    hp = dict(gamma=cfg.gamma, tau=cfg.tau, cql_scale=cfg.cql_scale, awac_scale=cfg.awac_scale,
              beta_awac=cfg.beta_awac)
    engine = distributed.current()

    def micro_losses() -> Iterator[MicroLoss]:
        for _ in range(tc.grad_accum):  # each rank: its shard of the micro-batch's prompt groups
            groups = engine.shard(next(batches), "train.batch_size / train.grad_accum")
            batch = collate([ex for i in groups for ex in examples[i]], policy.pad_id, policy.device)
            ctx.add_tokens(int(batch.attention_mask.sum()) * (1 if target.body is None else 2))  # + target body
            logits, _, hidden = forward(policy.model, batch.input_ids, batch.attention_mask, cache=False,
                                        hidden=True)
            qs, targets, values = heads(hidden, target.hidden(batch.input_ids, batch.attention_mask))
            loss, metrics = ilql_loss([q[:, :-1] for q in qs], [t[:, :-1] for t in targets], values,
                                      logits[:, :-1].float(), batch.input_ids[:, 1:], batch.rewards, batch.mask,
                                      **hp)
            # token means: weighted by this rank's share of the micro-batch's tokens over the ranks
            yield MicroLoss(loss, metrics, token_weights([batch.mask])[0])

    def step_fn(step: int) -> dict[str, float]:
        metrics = optimizer_step(stepper, micro_losses(), step=step, micro_batches=tc.grad_accum)
        if step % cfg.steps_for_target_q_sync == 0:
            target.sync(policy.model, cfg.alpha)
        return metrics

    modules = {"policy": policy.model, "heads": heads, **({"target": target.body} if target.body is not None else {})}
    state = checkpoint.TrainingState(modules=modules, stepper=stepper,
                                     objects={"batches": batches})
    loop(ctx, state, step_fn, policy=decoding, desc=cfg.name)
    return decoding


# -- registration --------------------------------------------------------------------------------------------------

PRESETS = {
    "ilql": ILQLConfig(name="ilql"),
    # the zoo's earlier variant: target Q heads only, barely lagging, no CQL term, a light BC term
    "ilql_light": ILQLConfig(name="ilql_light", target_transformer=False, alpha=0.5, cql_scale=0.0, awac_scale=0.05),
}

DESCRIPTIONS = {
    "ilql": "ILQL (Snell et al. 2022): offline Q-learning with a Polyak target network, decoding with beta (Q - V)",
    "ilql_light": "ILQL-light: target Q heads only (alpha 0.5), no CQL, awac 0.05; IQL plus light BC",
}


@hookimpl
def alignzoo_register_algos(register):
    for name, preset in PRESETS.items():
        register(name, train, preset, description=DESCRIPTIONS[name])
