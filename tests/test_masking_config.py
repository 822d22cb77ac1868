"""fastmask.MaskingConfig: one set of masking settings, read by MaskingStrategy, apply_fastmask,
fastmask pretrain's flags and the experiments; one validate(); the old names warn and still work."""

import dataclasses
import json
import re
import warnings

import pytest
import torch
import transformers as T

import fastmask
from fastmask import MaskingConfig
from fastmask.experiments import common, convergence, variance
from fastmask.hf import apply_fastmask
from fastmask.masking_config import FLAGS, RENAMED, STRATEGIES
from fastmask.train import config as train_config
from fastmask.train.config import Config

from hf_models import ragged_batch, tiny_model, tokenizer  # noqa: F401 (a fixture)

MASK_ID, VOCAB = 3, 50
FIELDS = [f.name for f in dataclasses.fields(MaskingConfig)]

# (field, bad value, other fields, the message as a keyword caller sees it)
BAD = [
    ("masking", "spans", {}, "masking must be one of ('random', 'bernoulli', 'fully-explored', 'mapnet', 'whole-word', "
                             "'span'), got 'spans'"),
    ("mlm_probability", 0.0, {}, "mlm_probability must be in (0, 1], got 0.0"),
    ("mlm_probability", 1.5, {}, "mlm_probability must be a probability in [0, 1], got 1.5"),
    ("mask_replace_prob", -0.1, {}, "mask_replace_prob must be a probability in [0, 1], got -0.1"),
    ("random_replace_prob", 0.5, {}, "mask_replace_prob + random_replace_prob must be at most 1, got 0.8 + 0.5"),
    ("num_segments", 0, {}, "num_segments must be an int >= 1, got 0"),
    ("partition", "blocks", {}, "partition must be one of ('random', 'contiguous'), got 'blocks'"),
    ("masks_per_row", 0, {}, "masks_per_row must be an int >= 1, got 0"),
    ("masks_per_row", 2, dict(masking="fully-explored"),
     "masks_per_row applies to random and bernoulli masking, not 'fully-explored'"),
    ("mapnet_layers", 0, dict(masking="mapnet"), "mapnet_layers must be an int >= 1, got 0"),
    ("mapnet_hidden", 5, dict(masking="mapnet"),
     "mapnet_hidden must be an even number >= 2 (the proposal net's 2 heads), got 5"),
    ("mapnet_weight", -1.0, {}, "mapnet_weight must be >= 0, got -1.0"),
    ("mapnet_objective", "reward", {}, "mapnet_objective must be one of ('regression', 'variance', 'loss'), got 'reward'"),
    ("mapnet_objective", "variance", dict(weighting="sequence"), "mapnet_objective='variance' is the second moment of "
                                                                 "the token-weighted estimator: it needs weighting='token'"),
    ("mapnet_sampling", "multinomial", {}, "mapnet_sampling must be one of ('topk', 'poisson', 'systematic'), got "
                                           "'multinomial'"),
    ("uniform_mix", 2.0, {}, "uniform_mix must be a probability in [0, 1], got 2.0"),
    ("weighting", "row", {}, "weighting must be one of ('token', 'sequence'), got 'row'"),
    ("span_lengths", "poisson", {}, "span_lengths must be one of ('geometric', 'ngram'), got 'poisson'"),
    ("span_p", 0.0, {}, "span_p must be in (0, 1], got 0.0"),
    ("max_span", 0, {}, "max_span must be an int in [1, 64], got 0"),
    ("max_ngram", 65, {}, "max_ngram must be an int in [1, 64], got 65"),
    ("replace_per", "word", {}, "replace_per must be one of ('span', 'token'), got 'word'"),
    ("fused_loss", "yes", {}, "fused_loss must be True or False, got 'yes'"),
    ("mlm_probability_schedule", "exponential", {}, "mlm_probability_schedule must be one of ('constant', 'linear', "
                                                    "'cosine', 'step'), got 'exponential'"),
    ("mlm_probability_start", 1.5, {}, "mlm_probability_start must be a probability in [0, 1], got 1.5"),
]


def test_every_field_has_a_bad_case():
    assert {name for name, *_ in BAD} == set(FIELDS)


@pytest.mark.parametrize("name,value,others,message", BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_validate_rejects_each_bad_field_naming_it(name, value, others, message):
    config = MaskingConfig(**others, **{name: value})
    with pytest.raises(ValueError, match=re.escape(message)):
        config.validate()
    with pytest.raises(ValueError) as flagged:  # as fastmask pretrain names it: the flag
        config.validate(FLAGS)
    flag = "--" + name.replace("_", "-")
    assert flag in str(flagged.value)
    with pytest.raises(ValueError, match=re.escape(message)):  # the strategy layer: the same check
        fastmask.MaskingStrategy(config, mask_token_id=MASK_ID, vocab_size=VOCAB)


def test_the_defaults_validate_and_are_the_strategy_layers():
    assert MaskingConfig().validate() == MaskingConfig()
    strategy = fastmask.MaskingStrategy(mask_token_id=MASK_ID, vocab_size=VOCAB)
    assert strategy.config == MaskingConfig(num_segments=7)  # round(1 / 0.15), filled in
    assert (strategy.strategy, strategy.mlm_probability, strategy.objective, strategy.sampling) == (
        "random", 0.15, "regression", "systematic")
    # The proposal's shape is checked only where a net is built.
    MaskingConfig(mapnet_hidden=5, mapnet_layers=0).validate()


@pytest.mark.parametrize("masking", STRATEGIES)
def test_a_strategy_built_from_a_config_masks_as_one_built_from_keywords(masking):
    ids = torch.randint(5, VOCAB, (3, 30), generator=torch.Generator().manual_seed(0))
    settings = dict(mlm_probability=0.2, num_segments=3, partition="contiguous", mask_replace_prob=0.7,
                    random_replace_prob=0.2, mapnet_sampling="poisson", weighting="sequence", uniform_mix=0.3,
                    mapnet_objective="loss", span_lengths="ngram", max_ngram=4, replace_per="token")
    table = torch.arange(VOCAB) % 3 != 1  # the word strategies' word starts (the others ignore them)
    steps = []
    for build in (lambda p: fastmask.MaskingStrategy(MaskingConfig(masking, **settings), mask_token_id=MASK_ID,
                                                     vocab_size=VOCAB, seed=5, proposal=p, word_start_table=table),
                  lambda p: fastmask.MaskingStrategy(masking, mask_token_id=MASK_ID, vocab_size=VOCAB, seed=5,
                                                     proposal=p, word_start_table=table, **settings)):
        torch.manual_seed(1)
        proposal = MaskingConfig().proposal_net(torch.nn.Embedding(VOCAB, 8), max_len=30) if masking == "mapnet" else None
        steps.append(build(proposal)(ids, row_ids=torch.arange(3), epoch=1))
    assert torch.equal(steps[0].input_ids, steps[1].input_ids) and torch.equal(steps[0].labels, steps[1].labels)


def test_old_keywords_of_masking_strategy_warn_and_give_the_same_masks():
    ids = torch.randint(5, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
    net = MaskingConfig().proposal_net(torch.nn.Embedding(VOCAB, 8), max_len=24)
    new = fastmask.MaskingStrategy("mapnet", mask_token_id=MASK_ID, vocab_size=VOCAB, proposal=net,
                                   mapnet_objective="loss", mapnet_sampling="topk")
    with pytest.warns(DeprecationWarning) as caught:
        old = fastmask.MaskingStrategy(strategy="mapnet", mask_token_id=MASK_ID, vocab_size=VOCAB, proposal=net,
                                       objective="loss", sampling="topk")
    assert {w.filename for w in caught} == {__file__}  # the warning points at the caller
    assert {str(w.message).split(":")[1].split("=")[0].strip() for w in caught} == {"strategy", "objective", "sampling"}
    assert old.config == new.config
    a, b = (s(ids, row_ids=torch.arange(2), epoch=0) for s in (old, new))
    assert torch.equal(a.labels, b.labels) and torch.equal(a.weights, b.weights)
    # A bad value under an old name is reported under that name.
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match=re.escape(
            "objective='variance' is the second moment of the token-weighted estimator: it needs weighting='token'")):
        fastmask.MaskingStrategy(mask_token_id=MASK_ID, vocab_size=VOCAB, objective="variance", weighting="sequence")


def test_unknown_and_doubled_names_are_type_errors():
    with pytest.raises(TypeError, match="unexpected keyword argument 'mlm_prob'"):
        fastmask.MaskingStrategy(mask_token_id=MASK_ID, vocab_size=VOCAB, mlm_prob=0.2)
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="two names of one setting"):
        fastmask.MaskingStrategy(mask_token_id=MASK_ID, vocab_size=VOCAB, sampling="topk", mapnet_sampling="topk")
    with pytest.raises(TypeError, match="multiple values"):
        fastmask.MaskingStrategy("random", mask_token_id=MASK_ID, vocab_size=VOCAB, masking="bernoulli")


# --------------------------------------------------------------------------------------------
# fastmask pretrain: a flag per field, generated from the dataclass.


def test_pretrain_has_a_flag_for_every_field_with_its_default_and_help():
    parser = train_config._parser()
    actions = {a.dest: a for a in parser._actions}
    group = next(g for g in parser._action_groups if g.title == "masking")
    assert {a.dest for a in group._group_actions} == set(FIELDS)
    for f in dataclasses.fields(MaskingConfig):
        action = actions[f.name]
        flag = "--" + f.name.replace("_", "-")
        if f.metadata["kind"] is bool:  # a switch: --fused-loss / --no-fused-loss
            assert action.option_strings == [flag, "--no-" + flag[2:]] and action.default == f.default
            assert f.metadata["help"] in action.help
            continue
        assert action.option_strings == [flag]
        if f.name == "masking":  # the pretrain baseline joins the strategies
            assert tuple(action.choices) == (*STRATEGIES, "hf")
            continue
        assert action.default == f.default and f.metadata["help"] in action.help
        assert action.choices == f.metadata["choices"] and action.type is f.metadata["kind"]


def test_pretrain_flags_set_every_field_and_the_model_masks_with_them():
    values = dict(masking="mapnet", mlm_probability=0.2, mask_replace_prob=0.7, random_replace_prob=0.2,
                  num_segments=3, partition="contiguous", masks_per_row=1, mapnet_layers=1, mapnet_hidden=6,
                  mapnet_weight=0.5, mapnet_objective="loss", mapnet_sampling="poisson", uniform_mix=0.3,
                  weighting="sequence", span_lengths="ngram", span_p=0.3, max_span=5, max_ngram=4,
                  replace_per="token", fused_loss=False, mlm_probability_schedule="linear", mlm_probability_start=0.3)
    assert set(values) == set(FIELDS)
    argv = [item for name, value in values.items()
            for item in ((f"--{'' if value else 'no-'}{name.replace('_', '-')}",) if isinstance(value, bool)
                         else ("--" + name.replace("_", "-"), str(value)))]
    cfg, _ = train_config.parse_args(argv)
    cfg = cfg.resolved()
    assert cfg.masking_config() == MaskingConfig(**values)
    from fastmask.train.model import Pretrainer

    model = Pretrainer(cfg, fastmask.baselines.in_memory_tokenizer(cfg.vocab_size))
    assert model.masking.config == MaskingConfig(**values)
    assert model.masking.proposal.project.out_features == 6 and len(model.masking.proposal.encoder.layers) == 1


def test_pretrain_names_a_bad_masking_setting_by_its_flag():
    for values, message in (
            (dict(partition="blocks"), "--partition must be one of ('random', 'contiguous'), got 'blocks'"),
            (dict(mask_replace_prob=0.95), "--mask-replace-prob + --random-replace-prob must be at most 1"),
            (dict(num_segments=0), "--num-segments must be an int >= 1, got 0"),
            (dict(masking="mapnet", mapnet_objective="variance", weighting="sequence"),
             "--mapnet-objective variance is the second moment of the token-weighted estimator: it needs "
             "--weighting token"),
            (dict(masking="hf", masks_per_row=2), "--masks-per-row applies to --masking random or bernoulli, not hf"),
            (dict(mapnet_weight=-1.0), "--mapnet-weight must be >= 0, got -1.0")):
        with pytest.raises(ValueError, match=re.escape(message)):
            Config(**values).resolved()
    hf = Config(masking="hf").resolved()
    assert hf.masking == "hf" and hf.masking_config().masking == "random"


# --------------------------------------------------------------------------------------------
# apply_fastmask: the same names, the config saved beside the model.


def _every_field(masking):
    common_fields = dict(mlm_probability=0.2, mask_replace_prob=0.7, random_replace_prob=0.2, num_segments=3,
                         partition="contiguous", mapnet_layers=1, mapnet_hidden=6, mapnet_weight=0.5,
                         mapnet_objective="variance", mapnet_sampling="poisson", uniform_mix=0.3, weighting="token",
                         span_lengths="ngram", span_p=0.3, max_span=5, max_ngram=4, replace_per="token",
                         mlm_probability_schedule="cosine", mlm_probability_start=0.3)
    return dict(common_fields, masking=masking, masks_per_row=2 if masking == "random" else 1,
                fused_loss=masking == "random")


@pytest.mark.parametrize("masking", ["random", "mapnet"])
def test_apply_fastmask_takes_every_field_and_saves_the_config(tokenizer, tmp_path, masking):
    settings = _every_field(masking)
    assert set(settings) == set(FIELDS)
    model = apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer, seed=9, **settings).train()
    assert model.fastmask.config == MaskingConfig(**settings)
    assert model.fastmask.masking.config == MaskingConfig(**settings)
    assert model.fastmask.mapnet_weight == 0.5 and model.fastmask.masking.seed == 9
    batch = ragged_batch(tokenizer)
    out = model(**batch)
    views = 2 if masking == "random" else 1  # masks_per_row: two masks of every row in the step
    assert out.positions.shape[0] == views * batch["input_ids"].shape[0]
    out.loss.backward()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "fastmask.json").read_text())
    assert saved == dict(settings, seed=9)  # canonical names only
    assert MaskingConfig.load(str(tmp_path)) == MaskingConfig(**settings)
    restored = apply_fastmask(T.AutoModelForMaskedLM.from_pretrained(tmp_path), tokenizer,
                              MaskingConfig.load(str(tmp_path)), seed=saved["seed"])
    assert restored.fastmask.config == model.fastmask.config
    if masking == "mapnet":
        for (name, want), got in zip(model.fastmask.masking.proposal.state_dict().items(),
                                     restored.fastmask.masking.proposal.state_dict().values()):
            assert torch.equal(want, got), name


def test_apply_fastmask_config_and_keywords_combine(tokenizer):
    config = MaskingConfig("fully-explored", num_segments=4)
    model = apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer, config, mlm_probability=0.3)
    assert model.fastmask.config == MaskingConfig("fully-explored", mlm_probability=0.3, num_segments=4)
    with pytest.raises(ValueError, match=re.escape("num_segments must be an int >= 1, got 0")):
        apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer, config, num_segments=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'objective_weight'"):
        apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer, objective_weight=1.0)


def test_apply_fastmask_old_names_warn_and_still_work(tokenizer, tmp_path):
    with pytest.warns(DeprecationWarning) as caught:
        model = apply_fastmask(tiny_model("BertForMaskedLM", tokenizer), tokenizer, masking="mapnet",
                               sampling="topk", proposal_layers=1, proposal_hidden=6)
    assert {w.filename for w in caught} == {__file__}
    assert sorted(str(w.message) for w in caught) == sorted(
        f"apply_fastmask: {old}= is deprecated, use {RENAMED[old]}= (the old name goes in fastmask 0.2)"
        for old in ("sampling", "proposal_layers", "proposal_hidden"))
    assert (model.fastmask.config.mapnet_sampling, model.fastmask.config.mapnet_layers,
            model.fastmask.config.mapnet_hidden) == ("topk", 1, 6)
    assert model.fastmask.masking.proposal.project.out_features == 6
    with pytest.warns(DeprecationWarning, match=r"settings\['proposal_hidden'\] is deprecated"):
        assert model.fastmask.settings["proposal_hidden"] == 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.fastmask.settings["mapnet_hidden"] == 6
    # A folder saved before the rename (fastmask.json with the old keys) restores its proposal net.
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "fastmask.json").read_text())
    before = dict(mapnet_layers="proposal_layers", mapnet_hidden="proposal_hidden", mapnet_sampling="sampling")
    old = {before.get(key, key): value for key, value in saved.items()}
    (tmp_path / "fastmask.json").write_text(json.dumps(old))
    assert MaskingConfig.load(str(tmp_path)) == model.fastmask.config
    restored = apply_fastmask(T.AutoModelForMaskedLM.from_pretrained(tmp_path), tokenizer, masking="mapnet")
    assert restored.fastmask.config.mapnet_hidden == 6 and restored.fastmask.config.mapnet_layers == 1
    for want, got in zip(model.fastmask.masking.proposal.state_dict().values(),
                         restored.fastmask.masking.proposal.state_dict().values()):
        assert torch.equal(want, got)


# --------------------------------------------------------------------------------------------
# The experiments' arms: MaskingConfig fields.


def test_every_experiment_arm_is_a_valid_masking_config():
    arms = set(convergence.ARMS) | set(variance.FAIR_ARMS) | {a for a in variance.ARMS if a.startswith("mapnet-")}
    for arm in arms:
        fields = common.arm_masking(arm, 7)
        config = MaskingConfig(**fields, num_segments=7).validate()
        assert config.views == (7 if arm in ("fully-explored", "random-k") else 1), arm
    assert common.arm_masking("random-k", 7) == dict(masking="random", masks_per_row=7)
    with pytest.raises(ValueError, match="unknown arm"):
        common.arm_masking("spans", 7)


def test_labelled_is_the_old_name_of_gather_labels():
    strategy = fastmask.MaskingStrategy("bernoulli", mask_token_id=MASK_ID, vocab_size=VOCAB)
    labels = torch.full((2, 10), -100)
    labels[:, 3] = 7
    with pytest.warns(DeprecationWarning, match="labelled is deprecated, use gather_labels"):
        old = strategy.labelled(None, labels)
    new = strategy.gather_labels(None, labels)
    assert torch.equal(old.positions.index, new.positions.index) and torch.equal(old.labels, new.labels)
