"""An auditor's labels of training sentences: drawn blind, saved where evaluate reads them, and
previewed from stored rewards exactly as evaluate then draws the lines."""

import numpy as np
import pandas as pd
import pytest
from conftest import build_audited_toy_run

from core.audit import EvaluationConfig, evaluate_run
from core.checkpoints import ENSEMBLE
from core.errors import IrlLensError
from core.evaluation import fit_threshold
from core.line_labels import (
    FOLDER,
    PAD,
    compare_labellers,
    label_weights,
    labeller_of,
    labellers_words,
    line_positions,
    preview_line,
    preview_words,
    read_labels,
    save_labels,
    sentences_near_the_line,
    sentences_to_label,
)


@pytest.fixture(scope="module")
def audited(tmp_path_factory, tiny_models):
    return build_audited_toy_run(tmp_path_factory.mktemp("labels") / "toy", tiny_models["toy"])


def _labelled_by_r_star(run, count=30):
    """A stand-in for an auditor: R*'s side of each sentence to label."""
    chosen = sentences_to_label(run, count)
    demos = run.read_table("demonstrations")
    return chosen.assign(dispreferred=demos.loc[chosen["row"], "dispreferred"].to_numpy(bool))


def test_sentences_to_label_are_distinct_training_sentences_drawn_by_seed_alone(audited):
    demos = audited.read_table("demonstrations")
    chosen = sentences_to_label(audited, 30)
    assert len(chosen) == 30 and chosen["text"].is_unique
    assert (demos.loc[chosen["row"], "split"] == "train").all()
    assert list(chosen.columns) == ["row", "text"]  # nothing a labeller could anchor on
    assert chosen.equals(sentences_to_label(audited, 30))
    with pytest.raises(IrlLensError, match="between 1 and"):
        sentences_to_label(audited, 0)


def test_saved_labels_read_back_and_the_same_labels_are_the_same_file(audited):
    labelled = _labelled_by_r_star(audited).astype({"dispreferred": object})
    labelled.loc[labelled.index[:3], "dispreferred"] = None  # not labelled: left out, not "preferred"
    path = save_labels(audited, labelled)
    assert path.parent == audited.path / FOLDER and save_labels(audited, labelled) == path
    sheet = pd.read_csv(path)
    assert set(sheet["label"]) == {"toxic", "non-toxic"} and len(sheet) == 27
    back = read_labels(audited, path)
    kept = labelled.iloc[3:]
    assert back["row"].tolist() == kept["row"].tolist()
    assert back["dispreferred"].tolist() == kept["dispreferred"].astype(bool).tolist()
    with pytest.raises(IrlLensError, match="no sentence is labelled"):
        save_labels(audited, labelled.assign(dispreferred=None))


def test_a_partly_filled_sheet_leaves_blanks_out_and_a_test_sentence_is_refused(audited, tmp_path):
    chosen = sentences_to_label(audited, 6)
    sheet = tmp_path / "sheet.csv"
    pd.DataFrame({"text": chosen["text"], "label": ["toxic", "", "non-toxic", "", "", "toxic"]}).to_csv(sheet, index=False)
    assert read_labels(audited, sheet)["dispreferred"].tolist() == [True, False, True]
    pd.DataFrame({"text": chosen["text"], "label": [""] * 6}).to_csv(sheet, index=False)
    with pytest.raises(IrlLensError, match="no sentence has a label yet"):
        read_labels(audited, sheet)
    demos = audited.read_table("demonstrations")
    test = demos.loc[demos["split"] == "test", "sentence"].head(2)
    pd.DataFrame({"text": test, "label": ["toxic", "non-toxic"]}).to_csv(sheet, index=False)
    with pytest.raises(IrlLensError, match="not a training sentence"):
        read_labels(audited, sheet)


def test_a_sheet_with_malformed_rounds_is_refused_with_what_they_must_hold(audited, tmp_path):
    chosen = sentences_to_label(audited, 4)
    sheet = tmp_path / "rounds.csv"
    good = pd.DataFrame({"text": chosen["text"], "label": ["toxic", "non-toxic", "toxic", "non-toxic"],
                         "round": [1, 1, 2, 2], "band_low": [None, None, 0.2, 0.2], "band_high": [None, None, 0.4, 0.4]})  # fmt: skip
    good.to_csv(sheet, index=False)
    assert read_labels(audited, sheet)["round"].tolist() == [1, 1, 2, 2]
    for bad in ({"round": [1, 1, "two", 2]}, {"band_high": [None, None, 1.4, 0.4]}, {"band_low": [None, None, 0.5, 0.2]},
                {"band_low": [None, None, None, 0.2]}, {"round": [0, 1, 2, 2]}):  # fmt: skip
        good.assign(**bad).to_csv(sheet, index=False)
        with pytest.raises(IrlLensError, match="must hold a round"):
            read_labels(audited, sheet)


def test_the_preview_draws_the_lines_evaluate_then_draws(audited, tmp_path):
    """Fitted to the labels, each member's line flags the share the preview said; evaluate, given
    the saved sheet, draws exactly those lines, even where the labelled set names other columns."""
    import shutil

    run_path = tmp_path / "copy"
    shutil.copytree(audited.path, run_path)
    from core.run_store import Run

    run = Run.open(run_path)
    labelled = _labelled_by_r_star(run)
    preview = preview_line(run, labelled)
    table = preview.members.set_index("member")
    assert table.index[-1] == ENSEMBLE and preview.n == 30
    assert preview.n_dispreferred == int(labelled["dispreferred"].sum())
    low, high = preview.share_interval
    assert low < preview.n_dispreferred / 30 < high
    assert (table["right_own"] >= table["right_now"]).all()  # the fitted line is the best on its own labels
    assert (table["right_own"] >= table["right_one_share"]).all()  # one share for all fits each member less closely
    assert (table["own_low"] <= table["own_high"]).all() and table["auc"].between(0, 1).all()
    assert preview.one_share_band[0] <= preview.one_share <= preview.one_share_band[1]
    assert set(preview.disagreement) == {"now", "one_share", "own_lines"}
    scores = run.read_table("member_scores").set_index("row")
    name = table.index[0]
    line = fit_threshold(scores.loc[labelled["row"], name].to_numpy(), labelled["dispreferred"].to_numpy())
    train = scores.loc[scores["split"] == "train", name].to_numpy()
    assert table.loc[name, "own_share"] == pytest.approx((train < line).mean())
    said = " ".join(preview_words(preview, run.objective))
    assert "You labelled 30 training sentences" in said and "toxic" in said and "R*" not in said

    path = save_labels(run, labelled)
    evaluate_run(run, EvaluationConfig(calibration_size=50, calibration="labels", calibration_labels=str(path),
                                       label_text_column="tweet", label_column="class"), progress=False)  # fmt: skip
    after = run.read_table("members").set_index("member")
    assert run.stage_summary("evaluate")["calibration"] == "labels"
    from core.comparison import flag_share, line_reading, threshold_words

    assert threshold_words(run) == "a threshold fitted on 30 training sentences labelled by people"
    assert list(after.index) == list(table.index)  # a line chooses no member
    scores = run.read_table("member_scores")
    train = scores[scores["split"] == "train"]
    flagged = [(train[m] < after.loc[m, "threshold"]).mean() for m in after.index]
    assert flagged == pytest.approx(table["own_share"].tolist())
    assert preview_line(run, labelled).members["now_share"].tolist() == pytest.approx(table["own_share"].tolist())

    # one share for every member: evaluate fits the preview's share and draws every line at it
    evaluate_run(run, EvaluationConfig(calibration_size=50, calibration="labels_share", calibration_labels=str(path)),
                 progress=False)  # fmt: skip
    summary = run.stage_summary("evaluate")
    assert summary["fitted_flag_share"] == preview.one_share and summary["n_calibration_labels"] == 30
    assert flag_share(run) == preview.one_share
    assert threshold_words(run).startswith(f"a threshold that flags the lowest {preview.one_share:.0%} of training")
    assert line_reading(run).startswith(f"The verdict lines flag the lowest {preview.one_share:.0%} of training "
                                        "sentences, the one share that best fits 30 training sentences labelled by people; R* calls")
    at_share = run.read_table("members").set_index("member")
    scores = run.read_table("member_scores")
    train = scores[scores["split"] == "train"]
    flagged = [(train[m] < at_share.loc[m, "threshold"]).mean() for m in at_share.index]
    assert flagged == pytest.approx(table["one_share_line"].tolist())
    from core.audit import recalibrate
    from core.recovered_reward import RecoveredReward
    from core.report import render_report

    page = render_report(run)  # the report says who drew the line, and where the rewards part ways with them
    assert "<h2>The people who drew the line</h2>" in page and "The labellers labelled 30 training sentences" in page
    assert "The people who drew the line" not in render_report(audited)  # a share line: no such section

    shown = RecoveredReward(run)  # any equally good reward is calibrated the same way: at the fitted share
    std = at_share.loc[shown.names, "train_std"].to_numpy()
    assert np.all(np.abs(recalibrate(run, shown) - at_share.loc[shown.names, "threshold"].to_numpy()) <= 0.01 * std)


def test_where_the_rewards_and_the_labeller_part_ways(audited):
    """Flipping labels the members agree on puts those sentences, and only sentences most members
    place on the other side, in the list."""
    from core.line_labels import where_they_disagree

    labelled = _labelled_by_r_star(audited)
    first = preview_line(audited, labelled, resamples=100)
    agreed = first.placed.assign(label=labelled["dispreferred"].to_numpy())
    unanimous = agreed[agreed["flagged_at_one_share"] == np.where(agreed["label"], first.n_shown, 0)]["row"].head(3)
    assert len(unanimous) == 3
    flipped = labelled.assign(dispreferred=np.where(labelled["row"].isin(unanimous), ~labelled["dispreferred"],
                                                    labelled["dispreferred"]))  # fmt: skip
    preview = preview_line(audited, flipped, resamples=100)
    apart = where_they_disagree(preview, flipped, audited.objective)
    assert len(apart) >= 1
    placed = preview.placed.merge(flipped[["row", "text"]], on="row").set_index("text")
    for text, label in zip(apart["text"], apart["your label"], strict=True):
        flagged = placed.loc[text, "flagged_at_one_share"]
        assert (flagged < preview.n_shown / 2) if label == "toxic" else (flagged > preview.n_shown / 2)
    others = placed.drop(index=apart["text"])
    assert (np.where(others["dispreferred"], others["flagged_at_one_share"] >= preview.n_shown / 2,
                     others["flagged_at_one_share"] <= preview.n_shown / 2)).all()  # fmt: skip
    said = " ".join(preview_words(preview, audited.objective))
    assert (f"most members put {len(apart)} of your 30 sentences on the other side" in said) == (len(apart) > 0)


def test_one_side_only_draws_no_line_and_a_line_from_labels_needs_labels(audited):
    labelled = _labelled_by_r_star(audited).assign(dispreferred=True)
    with pytest.raises(IrlLensError, match="both sides"):
        preview_line(audited, labelled)
    from core.audit import human_calibration

    demos = audited.read_table("demonstrations")
    with pytest.raises(IrlLensError, match="'labels_share' needs calibration_labels.*Your labels"):
        human_calibration(demos, "sentence", EvaluationConfig(calibration="labels_share"), audited.objective)


def test_few_labels_are_said_to_be_few(audited):
    labelled = _labelled_by_r_star(audited, 30)
    labelled = pd.concat([labelled[labelled["dispreferred"]].head(4), labelled[~labelled["dispreferred"]].head(6)])
    said = preview_words(preview_line(audited, labelled, resamples=200), audited.objective)
    assert any("Fewer than 20 labels" in s for s in said)
    assert np.isfinite(preview_line(audited, labelled, resamples=200).members["own_high"]).all()


def test_one_share_for_every_reward_is_the_share_the_labels_mark():
    """Labels that call exactly each reward's lowest 30% of sentences dispreferred: the one share
    that fits them is 30%, whatever each reward's scale."""
    from core.evaluation import fit_share

    rng = np.random.default_rng(0)
    base = rng.normal(size=1000)
    rewards = np.column_stack([base, 3 * base + 1, base ** 3])  # one order, three scales
    labels = base < np.quantile(base, 0.3)
    assert fit_share(rewards[:200], labels[:200], rewards) == pytest.approx(0.3, abs=0.02)
    noisy = rewards + rng.normal(scale=[0.3, 0.9, 0.3], size=rewards.shape)
    assert fit_share(noisy[:200], labels[:200], noisy) == pytest.approx(0.3, abs=0.06)


def test_labels_with_a_gap_fit_every_share_in_it_and_the_band_says_so():
    """Labels the rewards separate cleanly, none between the 20th and the 50th percentile: every
    share in that gap fits them alike. The one share is its middle, and the band holds the whole
    gap, not only the middle that resamples would barely move."""
    from core.evaluation import best_shares, fit_share
    from core.line_labels import _one_share, _resamples

    rng = np.random.default_rng(1)
    calibration = np.sort(rng.uniform(size=(2000, 1)), axis=0)
    rewards = np.concatenate([rng.uniform(0, 0.19, 12), rng.uniform(0.51, 1, 18)])[:, None]
    labels = rewards[:, 0] < 0.35
    from core.evaluation import SHARES

    lines = np.quantile(calibration[:, 0], SHARES)
    gap = SHARES[(lines > rewards[labels, 0].max()) & (lines <= rewards[~labels, 0].min())]  # every label right
    low, middle, high = best_shares(rewards, labels, calibration)
    assert (low, high) == (gap[0], gap[-1]) and 0.17 <= low <= 0.21 and 0.49 <= high <= 0.53
    assert middle == fit_share(rewards, labels, calibration) == gap[len(gap) // 2]
    draws = _resamples(np.ones(30, int), 200, labels, np.random.default_rng(0))
    share, band_low, band_high = _one_share(rewards, labels, np.ones(30), calibration, draws)
    assert share == middle and band_low <= low and band_high >= high


def test_the_cli_writes_a_sheet_and_says_where_its_labels_draw_the_lines(audited, tmp_path):
    import json

    from typer.testing import CliRunner

    from core.cli import app

    runner = CliRunner()
    out = tmp_path / "to label.csv"
    done = runner.invoke(app, ["label-sheet", str(audited.path), str(out), "--count", "24"])
    assert done.exit_code == 0, done.output
    sheet = pd.read_csv(out, keep_default_na=False)
    assert list(sheet.columns) == ["text", "label"] and len(sheet) == 24 and (sheet["label"] == "").all()
    again = runner.invoke(app, ["label-sheet", str(audited.path), str(out)])
    assert again.exit_code != 0 and "exists" in str(again.exception or again.output)
    demos = audited.read_table("demonstrations").set_index(audited.read_table("demonstrations")["sentence"].str.strip())
    sheet["label"] = ["toxic" if demos.loc[t, "dispreferred"].any() else "non-toxic" for t in sheet["text"]]
    sheet.loc[:3, "label"] = ""  # four left blank
    sheet.to_csv(out, index=False)
    done = runner.invoke(app, ["line-from-labels", str(audited.path), str(out), "--json"])
    assert done.exit_code == 0, done.output
    found = json.loads(done.stdout)
    expected = preview_line(audited, read_labels(audited, out))
    assert found["n_labels"] == 20 == expected.n and found["calibration_now"] == "share"
    assert [m["own_share"] for m in found["members"]] == pytest.approx(expected.members["own_share"].tolist())
    assert found["one_share"] == expected.one_share and isinstance(found["where_they_disagree"], list)
    assert isinstance(found["members"][0]["right_now"], int)
    assert found["apply"]["labels"].endswith(f"evaluate.calibration_labels='{out.resolve()}'")  # quoted: the path has a space
    assert "evaluate.calibration=labels_share " in found["apply"]["labels_share"]
    text = runner.invoke(app, ["line-from-labels", str(audited.path), str(out)])
    assert text.exit_code == 0 and "You labelled 20 training sentences" in text.output


def test_a_label_drawn_near_the_line_stands_for_fewer_sentences():
    """One over the rate the rounds drew it at: round 1 draws 4 of 100 alike (rate 0.04); round 2
    draws 2 of the 10 sentences placed in its band (rate 0.2 more, for the band only)."""
    positions = pd.Series(np.arange(100) / 100, index=np.arange(100) + 1000)
    labelled = pd.DataFrame({"row": [1005, 1040, 1044, 1090, 1041, 1047],
                             "round": [1, 1, 1, 1, 2, 2], "band_low": np.nan, "band_high": np.nan})  # fmt: skip
    labelled.loc[labelled["round"] == 2, ["band_low", "band_high"]] = (0.40, 0.49)
    rate = np.array([0.04, 0.24, 0.24, 0.04, 0.24, 0.24])
    assert label_weights(labelled, positions) == pytest.approx((1 / rate) / (1 / rate).mean())
    assert label_weights(labelled[labelled["round"] == 1], positions) == pytest.approx(np.ones(4))
    assert label_weights(labelled.drop(columns=["round", "band_low", "band_high"]), positions) == pytest.approx(np.ones(6))


def test_weights_count_a_label_as_the_sentences_it_stands_for():
    """A weight of 2 counts as the same label twice, for a line of one's own and for one share."""
    from core.evaluation import fit_share

    rng = np.random.default_rng(3)
    rewards, weights = rng.normal(size=(40, 3)), rng.integers(1, 4, size=40)
    labels = rewards[:, 0] + rng.normal(scale=0.8, size=40) < -0.3
    twice = np.repeat(np.arange(40), weights)
    assert fit_threshold(rewards[:, 0], labels, weights) == fit_threshold(rewards[twice, 0], labels[twice])
    calibration = rng.normal(size=(100, 3))
    assert fit_share(rewards, labels, calibration, weights) == fit_share(rewards[twice], labels[twice], calibration)


def test_a_round_near_the_line_narrows_where_the_line_can_go_and_evaluate_weighs_it(audited, tmp_path):
    """The next round holds unlabelled training sentences the members place in the one share's
    band; the preview counts each label by the sentences it stands for, shows the band round by
    round, and evaluate, given the sheet, draws the lines the preview drew."""
    import shutil

    from core.run_store import Run

    run = Run.open(shutil.copytree(audited.path, tmp_path / "rounds"))
    first = _labelled_by_r_star(run, 30)
    before = preview_line(run, first)
    drawn = sentences_near_the_line(run, first, 12)
    assert drawn.equals(sentences_near_the_line(run, first, 12)) and (drawn["round"] == 2).all()
    assert not drawn["row"].isin(first["row"]).any() and drawn["text"].is_unique
    low, high = drawn[["band_low", "band_high"]].iloc[0]
    assert (low, high) == pytest.approx((max(0, before.one_share_band[0] - PAD), min(1, before.one_share_band[1] + PAD)))
    members = [m for m in run.read_table("members")["member"] if m != ENSEMBLE]
    scores = run.read_table("member_scores").set_index("row")
    demos = run.read_table("demonstrations")
    train = demos[demos["split"] == "train"]["sentence"].str.strip().drop_duplicates(keep="last").index
    positions = line_positions(scores.loc[train, members])
    assert positions.loc[drawn["row"]].between(low, high).all()

    both = pd.concat([first.assign(round=1, band_low=np.nan, band_high=np.nan),
                      drawn.assign(dispreferred=demos.loc[drawn["row"], "dispreferred"].to_numpy(bool))], ignore_index=True)  # fmt: skip
    after = preview_line(run, both)
    assert after.n == 30 + len(drawn) and after.n_blind == 30 and after.share_interval == before.share_interval
    assert after.rounds[["round", "labels"]].values.tolist() == [[1, 30], [2, 30 + len(drawn)]]
    assert (after.rounds["one_share"].iloc[0], *after.rounds[["low", "high"]].iloc[0]) == (before.one_share, *before.one_share_band)
    assert after.rounds["one_share"].iloc[-1] == after.one_share
    weights = after.placed.set_index("row")["weight"]
    assert weights.loc[drawn["row"]].max() < weights.loc[first["row"]].max()  # drawn near the line: stands for fewer
    said = " ".join(preview_words(after, run.objective))
    assert "30 drawn blind and" in said and "round by round" in said

    path = save_labels(run, both)
    back = read_labels(run, path)
    assert back["round"].tolist() == both["round"].tolist() and back["band_low"].iloc[-1] == pytest.approx(low)
    evaluate_run(run, EvaluationConfig(calibration_size=50, calibration="labels_share", calibration_labels=str(path)),
                 progress=False)  # fmt: skip
    assert run.stage_summary("evaluate")["fitted_flag_share"] == after.one_share
    evaluate_run(run, EvaluationConfig(calibration_size=50, calibration="labels", calibration_labels=str(path)),
                 progress=False)  # fmt: skip
    lines = run.read_table("members").set_index("member")["threshold"]
    name = members[0]
    weighted = fit_threshold(scores.loc[both["row"], name].to_numpy(), both["dispreferred"].to_numpy(bool),
                             weights.loc[both["row"]].to_numpy())  # fmt: skip
    assert lines[name] == pytest.approx(weighted)
    assert preview_line(run, both).members.set_index("member")["now_share"].to_numpy() == pytest.approx(
        after.members["own_share"].to_numpy())


def test_the_cli_draws_the_next_round_near_the_line(audited, tmp_path):
    from typer.testing import CliRunner

    from core.cli import app

    first = _labelled_by_r_star(audited, 24)
    labels = tmp_path / "first.csv"
    pd.DataFrame({"text": first["text"], "label": np.where(first["dispreferred"], "toxic", "non-toxic")}).to_csv(labels, index=False)
    out = tmp_path / "next.csv"
    done = CliRunner().invoke(app, ["label-sheet", str(audited.path), str(out), "--near-the-line", str(labels), "--count", "8"])
    assert done.exit_code == 0, done.output
    sheet = pd.read_csv(out, keep_default_na=False)
    assert list(sheet.columns) == ["text", "label", "round", "band_low", "band_high"]
    assert sheet["text"].head(24).tolist() == first["text"].tolist() and (sheet["label"].head(24) != "").all()
    expected = sentences_near_the_line(audited, read_labels(audited, labels), 8)
    assert sheet["text"].iloc[24:].tolist() == expected["text"].tolist() and (sheet["label"].iloc[24:] == "").all()
    assert (sheet["round"].iloc[24:] == 2).all() and "round 2" in done.output


def test_labellers_compared_agree_where_they_label_alike_and_the_line_moves_with_who_labelled(audited):
    """Two labellers of the same blind sentences: κ and agreement on them, the sentences they label
    differently, and the test verdicts that change between the one shares their labels draw."""
    from sklearn.metrics import cohen_kappa_score

    first = _labelled_by_r_star(audited, 30).assign(round=1, band_low=np.nan, band_high=np.nan)
    other = first.copy()
    flipped = other.index[[0, 3, 7, 11, 20]]
    other.loc[flipped, "dispreferred"] = ~other.loc[flipped, "dispreferred"]
    result = compare_labellers(audited, {"ann": first, "bo": other.iloc[:25]})
    both = first.iloc[:25]["dispreferred"], other.iloc[:25]["dispreferred"]
    assert result.shared.loc["ann", "bo"] == 25 and result.shared.loc["ann", "ann"] == 30
    assert result.agree.loc["ann", "bo"] == pytest.approx(20 / 25)  # all five flipped are among the 25 both labelled
    assert result.kappa.loc["ann", "bo"] == pytest.approx(cohen_kappa_score(*both))
    assert sorted(result.disputed["text"]) == sorted(first.loc[flipped, "text"])
    assert set(result.disputed.columns) == {"text", "ann", "bo"}
    previews = {name: preview_line(audited, frame) for name, frame in (("ann", first), ("bo", other.iloc[:25]))}
    assert result.sheets["one_share"].to_dict() == {name: p.one_share for name, p in previews.items()}
    from core.audit import EvaluationConfig, calibration_rows

    members = [m for m in audited.read_table("members")["member"] if m != ENSEMBLE]
    scores = audited.read_table("member_scores")
    recorded = EvaluationConfig.recorded(audited)
    calibration = scores.iloc[calibration_rows(scores, recorded.calibration_size, recorded.seed)][members]
    test = scores.loc[scores["split"] == "test", members]
    shares = sorted(p.one_share for p in previews.values())
    low, high = calibration.quantile(shares[0]), calibration.quantile(shares[1])
    assert result.depends.to_numpy() == pytest.approx(((test >= low) & (test < high)).mean().to_numpy())
    said = " ".join(labellers_words(result, audited.objective))
    assert "2 labellers" in said and "κ" in said and "label 5 sentences differently" in said

    alike = compare_labellers(audited, {"ann": first, "again": first})
    assert alike.disputed.empty and (alike.depends == 0).all() and alike.kappa.loc["ann", "again"] == 1
    with pytest.raises(IrlLensError, match="at least two"):
        compare_labellers(audited, {"ann": first})


def test_a_sheet_saved_under_a_labellers_name_says_who_labelled_it(audited, tmp_path):
    import shutil

    from core.run_store import Run

    run = Run.open(shutil.copytree(audited.path, tmp_path / "named"))
    shutil.rmtree(run.path / FOLDER, ignore_errors=True)  # sheets other tests saved into the shared run
    labelled = _labelled_by_r_star(run, 12)
    path = save_labels(run, labelled, "Ann <b>O'Neil</b> ../x")
    assert path.parent == run.path / FOLDER and path.name.startswith("line-labels-Ann_b_O_Neil_b_x-")
    assert labeller_of(path) == "Ann_b_O_Neil_b_x" and labeller_of(save_labels(run, labelled)) == save_labels(run, labelled).name
    from core.report import render_report

    page = render_report(run)  # two sheets saved: the report sets their labellers side by side, names escaped
    assert "<h2>The labellers compared</h2>" in page and "2 labellers: 12 labels each" in page
    assert "<td>Ann_b_O_Neil_b_x</td>" in page


def test_the_cli_compares_labellers(audited, tmp_path):
    import json

    from typer.testing import CliRunner

    from core.cli import app

    first = _labelled_by_r_star(audited, 20)
    paths = []
    for name, labels in (("ann", first["dispreferred"]), ("bo", ~first["dispreferred"].where(first.index > 2, ~first["dispreferred"]))):
        paths.append(tmp_path / f"line-labels-{name}-0123456789ab.csv")
        pd.DataFrame({"text": first["text"], "label": np.where(labels, "toxic", "non-toxic")}).to_csv(paths[-1], index=False)
    done = CliRunner().invoke(app, ["labellers", str(audited.path), *map(str, paths), "--json"])
    assert done.exit_code == 0, done.output
    found = json.loads(done.stdout)
    assert [row["labeller"] for row in found["labellers"]] == ["ann", "bo"]
    assert found["agreement"]["ann"]["bo"] == pytest.approx(3 / 20) and len(found["disputed"]) == 17
    text = CliRunner().invoke(app, ["labellers", str(audited.path), *map(str, paths)])
    assert text.exit_code == 0 and "2 labellers: 20 labels each" in text.stdout  # a finding: stdout
    alone = CliRunner().invoke(app, ["labellers", str(audited.path), str(paths[0])])
    assert alone.exit_code != 0
    out = tmp_path / "pooled.csv"
    done = CliRunner().invoke(app, ["labellers", str(audited.path), *map(str, paths), "--pool", str(out), "--json"])
    assert done.exit_code == 0, done.output
    pooled = json.loads(done.stdout)["pooled"]
    assert out.exists() and pooled["n_labels"] == 40 and pooled["sheet"] == str(out.resolve())
    assert "calibration_labels=" in pooled["apply"]["labels_share"]
    again = CliRunner().invoke(app, ["line-from-labels", str(audited.path), str(out), "--json"])
    assert json.loads(again.stdout)["one_share"] == pooled["one_share"]
    said = CliRunner().invoke(app, ["line-from-labels", str(audited.path), str(out)])
    assert said.exit_code == 0 and "2 people's labels, pooled: 40 labels of 20 training sentences" in said.output
    kept = CliRunner().invoke(app, ["labellers", str(audited.path), *map(str, paths), "--pool", str(out)])
    assert kept.exit_code != 0 and "name a new .csv" in str(kept.exception)


def _two_labellers(run):
    """Ann labels 30 blind sentences as R* would and then a round near the line; Bo the same first
    25 with five turned over."""
    ann = _labelled_by_r_star(run, 30).assign(round=1, band_low=np.nan, band_high=np.nan)
    demos = run.read_table("demonstrations")
    near = sentences_near_the_line(run, ann, 10)
    ann = pd.concat([ann, near.assign(dispreferred=demos.loc[near["row"], "dispreferred"].to_numpy(bool))], ignore_index=True)
    bo = ann.iloc[:25].copy()
    turned = bo.index[[0, 3, 7, 11, 20]]
    bo.loc[turned, "dispreferred"] = ~bo.loc[turned, "dispreferred"]
    return ann, bo


def test_labels_pooled_from_several_people_draw_one_line_whose_band_resamples_the_people(audited, tmp_path):
    """Each label a row with who gave it; weights within each person's own rounds; resamples draw
    whole people first; the sentences they split are shown once with everyone's label; evaluate,
    given the pooled sheet, draws the share the preview drew."""
    import shutil

    from core.line_labels import _resamples, pool_labels, where_they_disagree
    from core.run_store import Run

    run = Run.open(shutil.copytree(audited.path, tmp_path / "pooled"))
    shutil.rmtree(run.path / FOLDER, ignore_errors=True)  # sheets other tests saved into the shared run
    ann, bo = _two_labellers(run)
    pooled = pool_labels({"ann": ann, "bo": bo})
    a, n = len(ann), len(ann) + 25
    assert a > 30 and pooled["labeller"].tolist() == ["ann"] * a + ["bo"] * 25
    positions = preview_line(run, ann).positions
    alone = np.concatenate([label_weights(ann, positions), label_weights(bo, positions)])
    assert label_weights(pooled, positions) == pytest.approx(alone / alone.mean())  # each person's own rounds

    rounds, y = pooled["round"].to_numpy(), pooled["dispreferred"].to_numpy(bool)
    draws = _resamples(rounds, 400, y, np.random.default_rng(0), pooled["labeller"].to_numpy())
    only = [{"ann" if i < a else "bo" for i in d} for d in draws]
    assert {"ann"} in only and {"bo"} in only and {"ann", "bo"} in only  # whole people are drawn, twice or not at all
    assert all(len(d) in (50, n, 2 * a) for d in draws)  # Bo's labels twice, both people's, or Ann's twice

    preview = preview_line(run, pooled)
    one_person = preview_line(run, pooled.drop(columns="labeller"))  # the same labels as if one person's
    assert preview.n_labellers == 2 and one_person.n_labellers == 1 and preview.n == n and preview.n_blind == 55
    assert preview.one_share == one_person.one_share  # pooling changes the band, not the share the labels fit
    width = np.subtract(*preview.one_share_band[::-1])
    assert width >= np.subtract(*one_person.one_share_band[::-1])
    said = " ".join(preview_words(preview, run.objective, "they"))
    assert f"2 people's labels, pooled: {n} labels of {a} training sentences, 55 of them drawn blind" in said
    apart = where_they_disagree(preview, pooled, run.objective)
    assert list(apart.columns) == ["text", "labels", "members say"] and apart["text"].is_unique
    split = pooled.groupby("row")["dispreferred"].nunique() > 1
    texts = pooled.drop_duplicates("row").set_index("row")["text"]
    for text, labels in zip(apart["text"], apart["labels"], strict=True):
        row = texts[texts == text].index[0]
        assert labels.startswith("ann: ") and (("; bo: " in labels) == (row in bo["row"].to_numpy()))
        assert split[row] == (labels.count("non-toxic") == 1 and "; bo: " in labels)

    path = save_labels(run, pooled)
    assert path.name.startswith("pooled-labels-") and not list((run.path / FOLDER).glob("line-labels-*"))
    back = read_labels(run, path)
    assert back["labeller"].tolist() == pooled["labeller"].tolist() and back["round"].tolist() == pooled["round"].tolist()
    evaluate_run(run, EvaluationConfig(calibration_size=50, calibration="labels_share", calibration_labels=str(path)),
                 progress=False)  # fmt: skip
    assert run.stage_summary("evaluate")["fitted_flag_share"] == preview.one_share
    assert run.stage_summary("evaluate")["n_calibration_labels"] == n
    from core.report import render_report

    page = render_report(run)  # the people who drew the line: both of them, each sentence once
    assert f"2 people&#x27;s labels, pooled: {n} labels" in page and "<th>labels</th>" in page

    compared = compare_labellers(run, {"ann": ann, "bo": bo})
    assert compared.pooled.one_share == preview.one_share and compared.pooled.one_share_band == preview.one_share_band
    assert f"Pooled, their {n} labels draw one share at" in " ".join(labellers_words(compared, run.objective))
    with pytest.raises(IrlLensError, match="pooled sheet already"):
        pool_labels({"all": pooled, "ann": ann})
    with pytest.raises(IrlLensError, match="their own sheet"):
        sentences_near_the_line(run, pooled)
    with pytest.raises(IrlLensError, match="at least two"):
        pool_labels({"ann": ann})
