"""The subjects the bench measures, each with the same interface (exactness, incremental and
naive generation, a training step): the reference-style WaveNet (reference.py), r9y9's
wavenet_vocoder package when installed (a cross-check), and wavetyp's WaveNet. Also the
models they are built on: the issue's reference model, a tiny one for --quick, and the
shipped checkpoint.

Every tensor a subject builds for its model is created on the model's device.
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from wavetyp.benchmark.measure import TEMPERATURE, log
from wavetyp.benchmark.reference import ReferenceConfig, ReferenceWaveNet
from wavetyp.benchmark.reference import train_step as reference_train_step
from wavetyp.core.audio import N_CODES, SILENCE_CODE
from wavetyp.core.conditioning import Conditioning
from wavetyp.core.model import WaveNet, WaveNetConfig

FALLBACK_CHECKPOINT = Path("checkpoints") / "run-fsdd" / "best.pt"   # until the shipped one exists

# the reference model, and a tiny one for --quick
REFERENCE_CONFIG = ReferenceConfig()
QUICK_REFERENCE_CONFIG = ReferenceConfig(layers_per_stack=3, n_stacks=2, kernel_size=3,
                                         residual_channels=16, gate_channels=16,
                                         skip_channels=16, end_channels=16)


def wavetyp_config_like(rc: ReferenceConfig) -> WaveNetConfig:
    """wavetyp's WaveNetConfig for the reference model (no conditioning, same widths)."""
    return WaveNetConfig(sample_rate=rc.sample_rate, layers_per_stack=rc.layers_per_stack,
                         n_stacks=rc.n_stacks, kernel_size=rc.kernel_size,
                         residual_channels=rc.residual_channels, gate_channels=rc.gate_channels,
                         skip_channels=rc.skip_channels, head_channels=rc.end_channels,
                         n_digits=0, speakers=[], n_mels=0)


def resolve_shipped(path: str | None) -> tuple[str | None, str]:
    """(checkpoint path or None = random default config, a note saying which)."""
    from wavetyp.core.checkpoint import SHIPPED
    if path:
        return str(path), f"checkpoint {path}"
    if SHIPPED.is_file():
        return str(SHIPPED), f"shipped checkpoint {SHIPPED.name}"
    fallback = SHIPPED.parent.parent / FALLBACK_CHECKPOINT
    if fallback.is_file():
        return str(fallback), (f"{SHIPPED.name} does not exist yet: using the training run's "
                               f"{FALLBACK_CHECKPOINT}")
    return None, "no checkpoint found: default WaveNetConfig with random weights"


def load_shipped(path: str | None, device) -> WaveNet:
    from wavetyp.core.checkpoint import load_model
    if path is None:
        torch.manual_seed(0)
        return WaveNet(WaveNetConfig()).eval().to(device)
    return load_model(path, device)[0]


class ReferenceSubject:
    """The reference-style WaveNet: input buffers + linearized weights per step, one
    multinomial call per step for the whole batch."""
    gen_threads_own_policy = False

    def __init__(self, cfg: ReferenceConfig, device):
        torch.manual_seed(0)
        self.model = ReferenceWaveNet(cfg).eval().to(device)
        self.device = device
        self.sample_rate = cfg.sample_rate
        self.n_params, self.receptive_field = self.model.num_parameters, self.model.receptive_field
        self.config = asdict(cfg)

    def exactness(self, extra: int) -> float:
        codes = torch.randint(0, N_CODES, (2, self.receptive_field + extra), device=self.device)
        with torch.no_grad():
            par = self.model(F.one_hot(codes, N_CODES).float().transpose(1, 2))
        inc = self.model.teacher_forced_logits(codes)
        return (par - inc).abs().max().item()

    def incremental(self, batch: int, n: int):
        self.model.generate(batch, n, TEMPERATURE)

    def naive(self, batch: int, n: int):
        self.model.generate_naive(batch, n, TEMPERATURE)

    def original(self) -> "OriginalSubject | None":
        """The installed wavenet_vocoder package on this model, or None (not installed)."""
        return OriginalSubject.build(self.model.cfg, self.device)

    def train_step(self, batch: int, length: int):
        torch.manual_seed(0)
        model = ReferenceWaveNet(self.model.cfg).to(self.device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        codes = torch.randint(0, N_CODES, (batch, length), device=self.device)
        return lambda: reference_train_step(model, opt, codes)


class OriginalSubject:
    """r9y9's wavenet_vocoder package, when importable: its WaveNet on the reference model
    (random weights, weight norm removed as its synthesis does), sampled one stream at a
    time with its own incremental_forward. A cross-check of the reference; optional."""

    def __init__(self, module, model, device):
        self.version = getattr(module, "__version__", "?")
        self.model, self.device = model, device

    @classmethod
    def build(cls, rc: ReferenceConfig, device) -> "OriginalSubject | None":
        try:
            import wavenet_vocoder
            ctor = wavenet_vocoder.WaveNet
        except Exception:                      # not installed, or it does not import here
            return None
        if rc.end_channels != rc.skip_channels:    # its head's hidden width is the skip width
            return None
        kwargs = dict(out_channels=rc.n_classes, layers=rc.layers_per_stack * rc.n_stacks,
                      stacks=rc.n_stacks, kernel_size=rc.kernel_size,
                      residual_channels=rc.residual_channels, gate_channels=2 * rc.gate_channels,
                      skip_out_channels=rc.skip_channels, cin_channels=-1, gin_channels=-1,
                      scalar_input=False, use_speaker_embedding=False)
        params = inspect.signature(ctor).parameters
        for name in ("weight_normalization", "legacy"):       # 0.1.x only
            if name in params:
                kwargs[name] = False
        torch.manual_seed(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")    # its weight-norm and hook deprecations
                model = ctor(**kwargs)
                if hasattr(model, "make_generation_fast_"):
                    model.make_generation_fast_()
        except Exception as e:                 # an interface this code does not know
            log(f"cross-check skipped: wavenet_vocoder.WaveNet could not be built ({e})")
            return None
        return cls(wavenet_vocoder, model.eval().to(device), device)

    @torch.no_grad()
    def incremental(self, batch: int, n: int):
        assert batch == 1, "the cross-check samples one stream"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.incremental_forward(T=n, softmax=True, quantize=True)


class WavetypSubject:
    """wavetyp's WaveNet: GenerationCache via generate(), the trainer's step."""
    gen_threads_own_policy = True

    def __init__(self, model: WaveNet, device):
        self.model = model.eval().to(device)
        self.device = device
        self.sample_rate = model.cfg.sample_rate
        self.n_params, self.receptive_field = model.num_parameters, model.receptive_field
        self.config = model.cfg.to_dict()

    def conditioning(self, codes: torch.Tensor, g: torch.Generator) -> Conditioning | None:
        """Every kind of conditioning the model has (labels, mel with some streams dropped),
        drawn with `g`, a generator on the model's device."""
        cfg, B, dev = self.model.cfg, codes.shape[0], self.device
        cond = Conditioning()
        if cfg.n_digits:
            cond.digit = torch.randint(-1, cfg.n_digits, (B,), generator=g, device=dev)
        if cfg.speakers:
            cond.speaker = torch.randint(-1, len(cfg.speakers), (B,), generator=g, device=dev)
        if cfg.n_mels:
            with torch.no_grad():
                cond.mel = self.model.log_mel(codes)
            cond.mel_present = torch.arange(B, device=dev) % 2 == 0
        return cond

    def exactness(self, extra: int) -> float:
        from wavetyp.core.generate import teacher_forced_logits
        g = torch.Generator(device=self.device).manual_seed(0)
        codes = torch.randint(0, N_CODES, (2, self.receptive_field + extra), generator=g,
                              device=self.device)
        cond = self.conditioning(codes, g)
        with torch.no_grad():
            par = self.model(codes, cond)
        inc = teacher_forced_logits(self.model, codes, cond)   # its buffers on the model's device
        return (par.float().cpu() - inc.float().cpu()).abs().max().item()

    def incremental(self, batch: int, n: int):
        from wavetyp.core.decoding import DecodeSettings
        from wavetyp.core.generate import generate
        generate(self.model, [DecodeSettings(temperature=TEMPERATURE)] * batch, n)

    @torch.inference_mode()
    def naive(self, batch: int, n: int):
        """No cache: a full forward over the last receptive field for every sample."""
        gen = torch.Generator(device=self.device).manual_seed(0)
        rf = self.receptive_field
        # RF known codes + one placeholder: the last position's logits see exactly those RF
        window = torch.full((batch, rf + 1), SILENCE_CODE, dtype=torch.long, device=self.device)
        for _ in range(n):
            logits = self.model(window)[:, -1]
            x = torch.multinomial(F.softmax(logits / TEMPERATURE, -1), 1, generator=gen)
            window = torch.cat([window[:, 1:-1], x, window[:, -1:]], 1)

    def train_step(self, batch: int, length: int):
        """wavetyp's training step (train.py): forward, masked loss, backward, clip, AdamW."""
        from wavetyp.training.loop import masked_loss
        torch.manual_seed(0)
        model = WaveNet(self.model.cfg).to(self.device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0, betas=(0.9, 0.99))
        g = torch.Generator(device=self.device).manual_seed(0)
        codes = torch.randint(0, N_CODES, (batch, length), generator=g, device=self.device)
        mask = torch.ones(batch, length, device=self.device)
        cuda = torch.device(self.device).type == "cuda"

        def step():
            cond = self.conditioning(codes, g)        # as make_batch does, every step
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                logits = model(codes, cond)
            loss = masked_loss(logits, codes, mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss.item()
        return step
