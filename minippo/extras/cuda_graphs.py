"""Sampling on a GPU as CUDA graphs: model.sample()'s loop, replayed instead of launched.

Off the reading path: on CUDA the command passes graph_sample() to the loop instead of
model.sample() (minippo/extras/launch.py:sampler). Why it exists: at
~110k parameters one decode step is ~60 tiny kernels, and launching a kernel costs the CPU more
(~5 us) than running it costs the GPU, so an eager GPU waits on Python. A CUDA graph records the
kernels of several decode steps once and then replays them all with one launch. Replay needs fixed
shapes and fixed addresses. model.decode_step(), the step model.sample() runs, has them: the column
it writes is a (1,) tensor (index_copy_), attention reads every column of the cache it is given,
those not yet written being masked out as not real, and positions change in place. So the graphs
record that very function; what this file adds around it:
  - a static KV cache of block_size columns, allocated once per batch size and temperature and read
    whole at every step (model.sample() hands the step only the columns written so far);
  - the step counter, done flags and outputs are tensors updated in place;
  - y_t ~ softmax(logits / T) is drawn inside the graph as argmax_i p_i / E_i with E_i ~ Exp(1),
    which picks i with probability p_i (the smallest of independent Exp(p_i) waiting times,
    E_i / p_i, wins with probability p_i / sum_j p_j); it is what torch.multinomial does for one
    sample, written out so that only the graph-safe Philox generator is involved.
On a CPU the same static loop runs without graphs, which is how tests compare it with the eager loop.
"""
import weakref

import torch

STEPS_PER_GRAPH = 8     # decode steps per replay; between replays one sync asks "all rows done?"
KEEP = 4                # Samplers kept per model (one per batch size and temperature), oldest dropped
_samplers = weakref.WeakKeyDictionary()       # model -> {(B, T, eos_id): Sampler}, built on demand


def sample_step(model, s, temperature: float, eos_id: int):
    """One step of model.sample(): draw y_t from s["logits"], record it, decode it into new logits."""
    logp = torch.log_softmax(s["logits"] / temperature, dim=-1)             # (B, V) log pi at T
    nxt = (logp.exp() / torch.empty_like(logp).exponential_()).argmax(1)    # y_t ~ pi, (B,)
    lp = logp.gather(1, nxt[:, None])
    nxt = nxt.masked_fill(s["done"], model.cfg.vocab_size)                  # PAD after EOS
    s["tokens"].index_copy_(1, s["i"], nxt[:, None])
    s["logprobs"].index_copy_(1, s["i"], lp.masked_fill(s["done"][:, None], 0.0))
    s["done"] |= nxt == eos_id
    s["i"].add_(1)
    s["logits"].copy_(model.decode_step(nxt, s))


class Sampler:
    """Static buffers for one model, batch size and temperature, and (on CUDA) two captured
    graphs: STEPS_PER_GRAPH steps, and 1 step for the tail. It holds no reference to the model
    (the graphs hold its weights' addresses), so a model that is deleted takes its Samplers along."""

    def __init__(self, model, B: int, temperature: float, eos_id: int):
        c, p = model.cfg, model.lm_head.weight
        self.temperature, self.eos_id = temperature, eos_id
        # the KV cache (col, pos, real, kv) over the whole position table, and the loop's own state
        self.s = dict(model.new_cache(B, c.block_size), i=p.new_zeros(1, dtype=torch.long),
                      done=p.new_zeros(B, dtype=torch.bool), logits=p.new_zeros(B, c.vocab_size),
                      tokens=p.new_zeros(B, c.block_size, dtype=torch.long), logprobs=p.new_zeros(B, c.block_size))
        self.graphs = {}
        if p.is_cuda:
            self.graphs[STEPS_PER_GRAPH] = self._capture(model, STEPS_PER_GRAPH)
            self.graphs[1] = self._capture(model, 1, pool=self.graphs[STEPS_PER_GRAPH].pool())

    def _steps(self, model, n: int):
        for _ in range(n):
            sample_step(model, self.s, self.temperature, self.eos_id)

    def _capture(self, model, n: int, pool=None):
        self.s["col"].zero_()                       # the warm-up writes columns 0 .. n-1
        self.s["i"].zero_()
        side = torch.cuda.Stream()                  # warm up off the default stream, as torch asks
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._steps(model, n)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            self._steps(model, n)
        return graph

    def __call__(self, model, prompts, max_new_tokens: int):
        s, pad = self.s, model.cfg.vocab_size
        s["done"].zero_()
        s["i"].zero_()                              # tokens, logprobs: each call rewrites the columns it returns
        s["logits"].copy_(model(prompts, s)[0][:, -1])      # prefill, eager: sets the cache's col, pos, real
        n = 0
        while n < max_new_tokens:
            k = STEPS_PER_GRAPH if max_new_tokens - n >= STEPS_PER_GRAPH else 1
            if k in self.graphs:
                self.graphs[k].replay()             # CUDA: k recorded steps, one launch
            else:
                self._steps(model, k)               # CPU: the same steps, run one by one
            n += k
            if k == STEPS_PER_GRAPH and bool(s["done"].all()):
                break
        # the eager loop stops at the step where the last row ended: drop the all-PAD columns after it
        L = int((s["tokens"][:, :n] != pad).any(0).nonzero().max()) + 1
        return s["tokens"][:, :L].clone(), s["logprobs"][:, :L].clone()


@torch.inference_mode()
def graph_sample(model, prompts, max_new_tokens: int, temperature: float, eos_id: int):
    """model.sample() through a Sampler: (B, P) prompts -> tokens (B, L), logprobs (B, L).
    Always in the parameters' dtype: under autocast the graphs would record bf16 kernels, and a
    graph recorded outside autocast would replay fp32 ones inside it, so autocast is off here."""
    if prompts.shape[1] + max_new_tokens > model.cfg.block_size:
        raise ValueError(f"prompt ({prompts.shape[1]}) + max_new_tokens ({max_new_tokens}) exceeds "
                         f"block_size {model.cfg.block_size}")
    if model.cfg.block_size < STEPS_PER_GRAPH:      # too short to record a chunk of steps
        from minippo.model import sample
        return sample(model, prompts, max_new_tokens, temperature, eos_id)
    key = (prompts.shape[0], float(temperature), eos_id)
    samplers = _samplers.setdefault(model, {})
    with torch.autocast(prompts.device.type, enabled=False):
        if key not in samplers:
            if len(samplers) >= KEEP:               # e.g. evaluation's last, smaller chunk
                samplers.pop(next(iter(samplers)))
            samplers[key] = Sampler(model, *key)
        return samplers[key](model, prompts, max_new_tokens)
