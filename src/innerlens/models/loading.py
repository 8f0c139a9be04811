"""Pretrained-style language models as TransformerLens bridges, from three places:

- ``tiny``: a small GPT-2-style language model trained here on the project's generated corpus, with a
  byte-level BPE tokenizer trained on it too, written once as a Hugging Face checkpoint directory
  (offline; ``training.json`` beside it holds its validation loss and the unigram baseline's);
- ``tiny-random``: the same architecture and tokenizer with random weights (the untrained control);
- a local Hugging Face checkpoint directory;
- any model name TransformerLens supports (downloaded or read from the Hugging Face cache).

Every path ends in ``TransformerBridge.boot_transformers`` (the real loading code); for local
directories the loaded ``hf_model`` is handed over so no hub call is made.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from innerlens.errors import ConfigError

TINY = "tiny"
TINY_RANDOM = "tiny-random"
TINY_SHAPE = {"n_layer": 4, "n_embd": 64, "n_head": 4, "n_positions": 128}
TINY_VOCAB = 1024
# How the tiny model learns the corpus: enough to sit far below the unigram baseline in a minute of CPU.
TINY_TRAINING = {"texts": 4000, "validation_texts": 400, "steps": 500, "batch_size": 32, "lr": 3e-3, "max_length": 64}
EOS = "<|endoftext|>"


@dataclass
class LoadedModel:
    name: str
    bridge: torch.nn.Module  # a TransformerBridge
    tokenizer: object  # a PreTrainedTokenizerBase
    version: str | None = None  # Model Registry version when loaded from models:/NAME/VERSION

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)

    @property
    def d_mlp(self) -> int:
        return int(self.bridge.cfg.d_mlp)


def tiny_model_dir(root: Path, seed: int = 0) -> Path:
    """Write the built-in tiny model (tokenizer + GPT-2 weights) under ``root`` once; return its directory."""
    directory = root / f"tiny-gpt2-s{seed}"
    if (directory / "config.json").exists() and (directory / "tokenizer.json").exists():
        return directory
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from innerlens.data.texts import generate_texts

    staging = directory.with_name(directory.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(generate_texts(3000, seed=10_000 + seed), vocab_size=TINY_VOCAB, min_frequency=2,
                                special_tokens=[EOS], show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=trainer._tokenizer, eos_token=EOS, bos_token=EOS, unk_token=EOS, pad_token=EOS)
    tokenizer.save_pretrained(staging)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, **TINY_SHAPE)
    GPT2LMHeadModel(config).save_pretrained(staging)
    if directory.exists():  # another process finished first
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.replace(directory)
    return directory


def unigram_loss(train_ids: list[list[int]], eval_ids: list[list[int]], vocab: int) -> float:
    """Cross-entropy (nats per token) of the add-one-smoothed token frequencies of ``train_ids`` on
    ``eval_ids``' next tokens: the bar a language model must clear to have learned anything beyond counts."""
    counts = torch.ones(vocab, dtype=torch.float64)
    for ids in train_ids:
        counts += torch.bincount(torch.tensor(ids[1:], dtype=torch.long), minlength=vocab).double()
    log_p = (counts / counts.sum()).log()
    targets = torch.tensor([token for ids in eval_ids for token in ids[1:]], dtype=torch.long)
    return float(-log_p[targets].mean())


def trained_tiny_dir(root: Path, seed: int = 0) -> Path:
    """Train the tiny model on the generated corpus once (from :func:`tiny_model_dir`'s weights); its directory."""
    directory = root / f"tiny-gpt2-trained-s{seed}"
    if (directory / "training.json").exists():
        return directory
    import json
    import shutil

    from transformers import AutoTokenizer, GPT2LMHeadModel

    from innerlens.data.texts import generate_texts

    start = tiny_model_dir(root, seed)
    settings = TINY_TRAINING
    tokenizer = AutoTokenizer.from_pretrained(start)
    model = GPT2LMHeadModel.from_pretrained(start)
    texts = generate_texts(settings["texts"] + settings["validation_texts"], seed=20_000 + seed)
    train_texts, val_texts = texts[: settings["texts"]], texts[settings["texts"]:]
    tokenizer.pad_token = tokenizer.eos_token

    def batch(rows: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = tokenizer(rows, return_tensors="pt", padding=True, truncation=True, max_length=settings["max_length"])
        labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)  # no loss on padding
        return encoded["input_ids"], labels

    def validation_loss() -> float:
        model.eval()
        with torch.no_grad():
            losses = [float(model(input_ids=ids, labels=labels).loss) for ids, labels in
                      (batch(val_texts[i : i + 100]) for i in range(0, len(val_texts), 100))]
        model.train()
        return sum(losses) / len(losses)

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings["lr"], total_steps=settings["steps"])
    before = validation_loss()
    model.train()
    for _ in range(settings["steps"]):
        rows = torch.randint(len(train_texts), (settings["batch_size"],), generator=generator)
        ids, labels = batch([train_texts[i] for i in rows])
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    encode_all = lambda rows: [tokenizer(t, truncation=True, max_length=settings["max_length"])["input_ids"] for t in rows]  # noqa: E731
    report = {**settings, "seed": seed, "val_loss_before": before, "val_loss": validation_loss(),
              "unigram_val_loss": unigram_loss(encode_all(train_texts), encode_all(val_texts), len(tokenizer))}
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "training.json").write_text(json.dumps(report, indent=2))
    if directory.exists():  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    else:
        staging.replace(directory)
    return directory


def declared_layers(name: str) -> int | None:
    """The layer count a model declares without loading it (the tiny models' shape, a checkpoint
    directory's config.json), so a bad --layer fails in one line before minutes of loading; None
    when only loading tells (a registered or remote model)."""
    if name in (TINY, TINY_RANDOM):
        return TINY_SHAPE["n_layer"]
    config = Path(name) / "config.json"
    if config.is_file():
        import json

        declared = json.loads(config.read_text())
        for key in ("n_layer", "num_hidden_layers", "n_layers"):
            if isinstance(declared.get(key), int):
                return declared[key]
    return None


@dataclass(frozen=True)
class ModelCache:
    """Where models are cached, and how a registered ``models:/NAME/VERSION`` is fetched into it: the
    session supplies the fetch from the tracking store, so models know no store."""

    root: Path
    fetch_registered: Callable[[str, Path], tuple[Path, str]] | None = None


def load_model(name: str, device: torch.device, *, cache: ModelCache, seed: int = 0) -> LoadedModel:
    """``tiny``, a checkpoint directory or a model name -> a TransformerBridge (one-line error when impossible)."""
    import transformer_lens.model_bridge.sources  # noqa: F401  (attaches boot_transformers)
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # stderr stays for innerlens' own messages
    version = None
    if name == TINY:
        source = trained_tiny_dir(cache.root, seed)
    elif name == TINY_RANDOM:
        source = tiny_model_dir(cache.root, seed)
    elif name.startswith("models:/"):
        if cache.fetch_registered is None:
            raise ConfigError(f"--model {name}: a registered model needs the tracking store (run it through innerlens)")
        source, version = cache.fetch_registered(name, cache.root / "registry")
    else:
        source = Path(name)
    if source.is_dir():
        if not (source / "config.json").exists():
            raise ConfigError(f"--model {name}: directory has no config.json (not a Hugging Face checkpoint)")
        tokenizer = AutoTokenizer.from_pretrained(source)
        hf_model = AutoModelForCausalLM.from_pretrained(source)
        bridge = TransformerBridge.boot_transformers(str(source), hf_model=hf_model, tokenizer=tokenizer, device=device)
    else:
        try:
            bridge = TransformerBridge.boot_transformers(name, device=device)
        except Exception as error:  # offline, unknown name, gated repo: all end the same way for the user
            raise ConfigError(
                f"--model {name}: could not load it ({type(error).__name__}); without network use --model tiny "
                f"or a local checkpoint directory"
            ) from None
        tokenizer = bridge.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # causal: activations before the padding are unaffected by it
    bridge.eval()
    return LoadedModel(name=name, bridge=bridge, tokenizer=tokenizer, version=version)


def save_checkpoint_dir(loaded: LoadedModel, directory: Path) -> None:
    """Write the bridge's current weights as a plain Hugging Face checkpoint (+ tokenizer).

    The bridge wraps the Hugging Face modules in place, so their parameters appear under wrapped
    names (``..._original_component...``); they are copied into a fresh model of the same class.
    """
    wrapped = loaded.bridge.original_model
    fresh = type(wrapped)(wrapped.config)
    wanted = fresh.state_dict()
    weights: dict[str, torch.Tensor] = {}
    for name, tensor in wrapped.state_dict().items():
        plain = name.replace("._original_component", "")
        if plain in wanted and plain not in weights:
            weights[plain] = tensor.detach().contiguous().cpu()
    missing = set(wanted) - set(weights)
    assert not missing, f"weights not found in the bridge: {sorted(missing)[:5]}"
    fresh.load_state_dict(weights)
    fresh.save_pretrained(directory)
    loaded.tokenizer.save_pretrained(directory)  # type: ignore[attr-defined]


def lm_loss(bridge: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over real (non-padding) target tokens (``mask``: real tokens)."""
    import torch.nn.functional as F

    logits = bridge(ids)[:, :-1]
    targets = ids[:, 1:]
    per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    weights = mask[:, 1:].reshape(-1).float()
    return (per_token * weights).sum() / weights.sum().clamp_min(1)


def real_tokens(ids: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """(texts, tokens) mask of the real tokens of right-padded ``ids`` whose last real token is ``last``."""
    return torch.arange(ids.shape[1], device=ids.device)[None, :] <= last[:, None]


def encode(tokenizer: object, texts: list[str], device: torch.device, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids and the index of each text's last real token."""
    batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length)  # type: ignore[operator]
    ids = batch["input_ids"].to(device)
    last = batch["attention_mask"].sum(1).to(device) - 1
    return ids, last
