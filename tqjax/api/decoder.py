"""`Decoder`: a decode set up once for ``(params, config, mesh)``, run over prompts.

The decoder holds what does not depend on the prompts: the models checked, the `DecodePlan`
(which owns every role), the knobs, and the parameters placed on the mesh (placed once, at the
first run, after that run's arguments are checked). `run_static` decodes the prompts as one
batch; `run_continuous` keeps ``batch_size`` prompts in flight. Both go through the one output
builder (`tqjax.api.outputs`). `tqjax.decode` is ``Decoder(params, config, mesh).run(...)``; a job
that decodes several lists of prompts (``tqjax decode --prompts``, the demo) builds one decoder.
"""

from __future__ import annotations

import jax

from tqjax.api import cross, inputs, sizing
from tqjax.api import params as params_lib
from tqjax.api.checks import check_decode, check_instance, check_mesh
from tqjax.api.outputs import DecodeOutput, build, empty, pick
from tqjax.api.params import TQParams
from tqjax.decoding import continuous, engine
from tqjax.decoding.config import DecodeConfig
from tqjax.decoding.decode_plan import Knobs
from tqjax.decoding.text_reader import ReaderContextError
from tqjax.parallel.multihost import fetch


class Decoder:
    """Decode prompts with ``config`` and the models of ``params``, on ``mesh`` if given (see
    `tqjax.decode` for every argument). Building one checks the models and the config against
    each other and makes the plan; nothing is placed or compiled until the first `run`."""

    def __init__(self, params: TQParams, config: DecodeConfig = DecodeConfig(), mesh=None):
        check_instance("params", params, TQParams, "a tqjax.TQParams")
        check_instance("config", config, DecodeConfig, "a tqjax.DecodeConfig")
        check_mesh("mesh", mesh)
        self.params, self.config, self.mesh = params, config, mesh
        self.models, self.plan = inputs.check_models(params, config)
        self.data = 1 if mesh is None else dict(zip(mesh.axis_names, mesh.devices.shape)).get("data", 1)
        self.tokenizer = getattr(params.sft, "tokenizer", None)
        self._placed, self._knobs = None, None

    @property
    def knobs(self) -> Knobs:
        """The config's traced numbers (made at the first run: building a decoder does no work)."""
        if self._knobs is None:
            self._knobs = Knobs.from_config(self.config)
        return self._knobs

    @property
    def placed(self) -> TQParams:
        """The parameters on the mesh (the given ones without a mesh), placed on first use."""
        if self._placed is None:
            self._placed = self.params if self.mesh is None else params_lib.place_params(
                self.params, self.mesh)
        return self._placed

    def run(self, prompts, batch_size=None, *, indices=None, chunk=None, on_done=None,
            on_error=None, stats=None) -> DecodeOutput:
        """`run_static` without ``batch_size``, else `run_continuous`. The plain methods and
        best-of-N with a text reader always run continuously (the reader scores each prompt's
        responses as they finish), one slot per prompt without ``batch_size``."""
        check_decode(prompts, batch_size, indices, self.mesh, chunk, on_done, on_error, stats)
        if batch_size is None and not (self.plan.text_readers and not self.plan.candidates):
            return self.run_static(prompts, indices)
        return self.run_continuous(prompts, batch_size, indices=indices, chunk=chunk,
                                   on_done=on_done, on_error=on_error, stats=stats)

    def _tokenize(self, prompts):
        """The prompts' checked token ids (the models and the plan were checked once, when the
        decoder was built)."""
        return inputs.tokenize(self.params, prompts, self.models, self.plan)

    def _arrays(self, token_lists, indices):
        return inputs.layout(self.config, token_lists, self.models, self.plan, indices,
                             batch_multiple=self.data)

    def run_static(self, prompts, indices=None) -> DecodeOutput:
        """The prompts as one batch, which runs until its longest row ends."""
        plan = self.plan
        if plan.text_readers and not plan.candidates:    # the reader scores finished prompts
            return self.run_continuous(prompts, None, indices=indices)
        token_lists = self._tokenize(prompts)
        if plan.text_readers:
            return cross.decode_text(self, prompts, token_lists, self._arrays(token_lists, indices))
        arrays = self._arrays(token_lists, indices)
        placed = self.placed
        if self.mesh is not None:
            arrays = params_lib.place_arrays(arrays, self.mesh)
        out = fetch(engine.decode_arrays(placed, arrays["tokens_BT"], arrays["start_B"],
                                         arrays["keys_B"], arrays["live_B"], self.knobs,
                                         plan=plan, mesh=self.mesh))
        fields = continuous.ROW_FIELDS + (("rewards_Bn",) if plan.method == "bon" else ())
        rows = [{name: out[name][i] for name in fields} for i in range(len(token_lists))]
        for row in rows:
            row["tokens_BN"] = row["tokens_BN"][:int(row["length_B"])]
        return build(rows, plan, self.tokenizer, self.params.reward is not None,
                     steps=int(out["steps"]))

    def run_continuous(self, prompts, batch_size, *, indices=None, chunk=None, on_done=None,
                       on_error=None, stats=None) -> DecodeOutput:
        """Continuous batching: at most ``batch_size`` prompts in flight (None: one slot per
        prompt; 0: the memory planner's largest), a finished prompt's slot refilled with the
        next prompt. With a text reader the candidate methods run the text round trip over slots
        (`tqjax.api.cross.decode_text`); the plain methods and best-of-N sample with the fused
        engine and the reader scores each prompt's responses as they finish (`TextScorer`)."""
        token_lists = self._tokenize(prompts)
        plan, data, P = self.plan, self.data, len(token_lists)
        scorer = None
        if plan.text_readers:
            if plan.candidates:
                rows = None if batch_size is None else -(-min(batch_size, P) // data) * data
                return cross.decode_text(self, prompts, token_lists,
                                         self._arrays(token_lists, indices), rows=rows,
                                         on_done=on_done, on_error=on_error, stats=stats)
            batch_size = batch_size or P
            scorer = cross.TextScorer(self, prompts, token_lists)
        else:
            batch_size = sizing.planned_batch_size(
                self, batch_size, token_lists, inputs.padded_length(token_lists, self.models, plan),
                chunk)
        arrays = self._arrays(token_lists, indices)
        rows = -(-min(batch_size, P) // data) * data
        keys_P = arrays["keys_B"][:P]     # host-side: the engine places what it feeds
        run_params, run_plan = (self.placed, plan) if scorer is None else (scorer.fused, scorer.plan)
        n = plan.n if plan.method == "bon" else 1
        if n > 1:     # sample j of a prompt: a plain row with key fold_in(prompt_key, j)
            items = [(ids, jax.random.fold_in(keys_P[i], j))
                     for i, ids in enumerate(token_lists) for j in range(n)]
        else:
            items = [(ids, keys_P[i]) for i, ids in enumerate(token_lists)]
        has_reward = self.params.reward is not None
        results, per_prompt, failed = {}, {}, []

        def done(item, row):
            i = item // n
            results[item] = row
            if not all(i * n + j in results for j in range(n)):
                return
            group = [results[i * n + j] for j in range(n)]
            if scorer is not None:
                try:
                    scorer.score(i, group)
                except ReaderContextError as error:
                    if on_error is None:
                        raise
                    failed.append(i)
                    on_error(i, error)
                    return
            per_prompt[i] = pick(group, plan)
            if on_done is not None:
                on_done(i, build([per_prompt[i]], plan, self.tokenizer, has_reward, steps=0))

        stats = stats if stats is not None else continuous.Stats()
        continuous.decode_rows(run_params, items, rows * n, arrays["tokens_BT"].shape[1],
                               self.knobs, run_plan, chunk=chunk, mesh=self.mesh, multiple=data,
                               on_done=done, stats=stats)
        kept = [per_prompt[i] for i in sorted(per_prompt)]
        out = build(kept, plan, self.tokenizer, has_reward, steps=stats.steps) if kept else empty()
        if scorer is not None:
            out.diagnostics.update(scorer.diagnostics())
            if on_error is not None:
                out.diagnostics["failed"] = sorted(failed)
        return out
