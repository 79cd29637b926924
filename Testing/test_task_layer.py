"""The shared Slicer task layer (``LesionSuiteLib.task_logic``, ``.retraining``,
``.case_review``) under the slicer-core wheel, and what the three task modules built on it
show the user: node names, node attributes and saved file names, as before.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("slicer")

import saved_work as sw  # noqa: E402

#: Per task: the result nodes' names and the files ``save_results`` writes, for an input
#: volume named as in ``saved_work`` (what the modules made before the shared layer).
NAMES = {
    "wmh": ({"segmentation": "FLAIR WMH", "activation": "FLAIR WMH activation",
             "table": "FLAIR ARWMC", "regions": "FLAIR ARWMC regions"},
            {"segmentation": "FLAIR_wmh.seg.nrrd", "activation": "FLAIR_wmh_activation.nrrd",
             "table": "FLAIR_arwmc.tsv", "regions": "FLAIR_arwmc_regions.seg.nrrd"}),
    "cmb": ({"markups": "SWI CMB candidates", "table": "SWI CMB table",
             "segmentation": "SWI CMB"},
            {"markups": "SWI_cmb_candidates.mrk.json", "table": "SWI_cmb_candidates.tsv",
             "segmentation": "SWI_cmb.seg.nrrd"}),
    "ich": ({"segmentation": "CT ICH", "cam": "CT ICH CAM", "table": "CT ICH slices"},
            {"segmentation": "CT_ich.seg.nrrd", "cam": "CT_ich_cam.nrrd",
             "table": "CT_ich_slices.tsv"}),
}
MODELS = {"wmh": "wmh_flair_dualtasker 1.0", "cmb": "cmb_shiva_distilled 1.0",
          "ich": "ich_weakseg_cam 1.0"}


@pytest.mark.parametrize("task", sw.TASKS)
def test_result_nodes_and_saved_files_keep_their_names(task, mrml_scene, tmp_path):
    case = sw.make_case(task, mrml_scene, tmp_path / "work")
    nodes, files = NAMES[task]
    result = case.result
    assert {key: getattr(result, key).GetName() for key in nodes} == nodes
    assert len(result.nodes) == len(nodes)
    prefix = f"LesionSuite.{task.upper()}."
    for node in result.nodes:
        assert node.GetAttribute(prefix + "Result") == MODELS[task]
        assert node.GetAttribute(prefix + "InputNodeID") == result.input.GetID()
    paths = case.logic.save_results(result, tmp_path / "saved")
    assert {key: path.name for key, path in paths.items()} == files
    assert all(path.parent == tmp_path / "saved" and path.is_file() for path in paths.values())
    # The file stem: the node name made safe for file names, or the one given.
    stem = result.input.GetName()
    suffixes = {key: name[len(stem):] for key, name in files.items()}
    result.input.SetName("../My scan: 2/3")
    assert {key: path.name for key, path in case.logic.save_results(
        result, tmp_path / "odd").items()} == {k: "My_scan__2_3" + s for k, s in suffixes.items()}
    assert {key: path.name for key, path in case.logic.save_results(
        result, tmp_path / "given", "s1").items()} == {k: "s1" + s for k, s in suffixes.items()}
    case.logic.remove_result_nodes(result)
    assert all(node.GetScene() is None for node in result.nodes)
    assert result.input.GetScene() is mrml_scene


# ------------------------------------------------------------------ out of distribution

#: Findings as ``lesion_core.head_check`` words them (a forced result's summary keeps them).
FINDINGS = ["the image has only 2 distinct values: a mask or label map, not a scan",
            "the brain mask measures 90 mL, outside the 600-2600 mL of an adult brain (a "
            "wrong voxel size, a partial scan or not a head)"]


def test_the_findings_of_a_summary_and_the_warning_they_give():
    from LesionSuiteLib.predictions import (SummaryFacts, out_of_distribution_findings,
                                            out_of_distribution_warning)

    assert out_of_distribution_findings({"out_of_distribution": FINDINGS}) == tuple(FINDINGS)
    for older in ({}, {"out_of_distribution": []}, {"out_of_distribution": None}):
        assert out_of_distribution_findings(older) == ()  # older results still load
    assert out_of_distribution_findings({"out_of_distribution": " one "}) == ("one",)
    assert out_of_distribution_warning(FINDINGS) == (
        f"Out of distribution: {FINDINGS[0]}; {FINDINGS[1]}. Treat this result with caution.")
    assert out_of_distribution_warning(["noise."]) == \
        "Out of distribution: noise. Treat this result with caution."
    assert out_of_distribution_warning(()) == out_of_distribution_warning(["  "]) == ""

    class Facts(SummaryFacts):
        def __init__(self, summary):
            self.summary = summary

    assert Facts({}).summary_text("3 microbleeds.") == "3 microbleeds."
    marked = Facts({"out_of_distribution": FINDINGS[:1]})
    assert marked.out_of_distribution == tuple(FINDINGS[:1])
    assert marked.summary_text("3 microbleeds.") == (
        f"Out of distribution: {FINDINGS[0]}. Treat this result with caution.\n"
        "3 microbleeds.")


@pytest.mark.parametrize("task", sw.TASKS)
def test_a_forced_result_is_marked_on_its_nodes_its_saved_scene_and_files(task, mrml_scene,
                                                                        tmp_path):
    """The findings go on every result node (a saved and reopened scene keeps them) and
    beside the saved node files; a normal result has neither."""
    from LesionSuiteLib.scene import create_scene, release_scene

    attribute = f"LesionSuite.{task.upper()}.OutOfDistribution"
    case = sw.make_case(task, mrml_scene, tmp_path / "work")
    normal = case.result
    assert normal.out_of_distribution == ()
    assert [node.GetAttribute(attribute) for node in normal.nodes] == [None] * len(normal.nodes)
    assert "out_of_distribution" not in case.logic.save_results(normal, tmp_path / "normal")
    assert case.logic.out_of_distribution_attribute == attribute

    outputs = _outputs_of(case, tmp_path / "work")
    outputs.summary["out_of_distribution"] = list(FINDINGS)
    forced = case.logic.add_result_nodes(normal.input, outputs)
    assert forced.out_of_distribution == tuple(FINDINGS)
    for node in forced.nodes:
        assert node.GetAttribute(attribute) == "; ".join(FINDINGS), node.GetName()

    mrml_scene.SetSaveToXMLString(1)
    mrml_scene.Commit()
    reopened = create_scene()
    try:
        reopened.SetLoadFromXMLString(1)
        reopened.SetSceneXMLString(mrml_scene.GetSceneXMLString())
        reopened.Import()
        again = [reopened.GetNodeByID(node.GetID()) for node in forced.nodes]
        assert [node.GetAttribute(attribute) for node in again] == \
            ["; ".join(FINDINGS)] * len(again)
    finally:
        release_scene(reopened)

    paths = case.logic.save_results(forced, tmp_path / "forced")
    note = paths["out_of_distribution"]
    assert note.name == f"{normal.input.GetName()}_out_of_distribution.txt"
    text = note.read_text(encoding="utf-8")
    assert f"This {task.upper()} result is out of distribution" in text
    assert "Treat this result with caution." in text
    assert text.splitlines()[-2:] == [f"- {finding}" for finding in FINDINGS]


def _outputs_of(case, work: Path):
    """The outputs the case's result nodes were made from, made again (CMB and ICH: read
    from the files ``make_case`` wrote in ``work``)."""
    from LesionSuiteLib import mrml_bridge as mb

    image = mb.node_to_volume(case.result.input, world=False)
    if case.task == "wmh":
        return sw.wmh_outputs(image)
    return case.logic.outputs_type.read(work / case.task, image)


# ------------------------------------------------------------------ command lines


def test_command_options_keep_order_and_leave_out_what_is_unset():
    from LesionSuiteLib.child_process import command_options

    assert command_options({"--device": "cpu", "--model": None, "--t1": True, "--x": False,
                            "--atlases": Path("a b"), "--steps": 0}) == [
        "--device", "cpu", "--t1", "--atlases", "a b", "--steps", "0"]
    assert command_options({}) == []


def test_later_imports_at_the_call(tmp_path, monkeypatch):
    import sys

    from LesionSuiteLib.later import Later

    (tmp_path / "later_probe_pkg.py").write_text(
        "class Thing:\n    @staticmethod\n    def make(a, b, c=0):\n        return (a, b, c)\n",
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    named = Later("later_probe_pkg", "Thing.make", "extra")
    assert "later_probe_pkg" not in sys.modules              # naming imports nothing
    assert named(1, c=3) == (1, "extra", 3) and "later_probe_pkg" in sys.modules
    assert named == Later("later_probe_pkg", "Thing.make", "extra")
    with pytest.raises(AttributeError):
        Later("later_probe_pkg", "Thing.missing")()


@pytest.mark.parametrize("task", sw.TASKS)
def test_each_task_names_functions_that_exist(task):
    """The functions named for later import resolve (a renamed one fails here, not when
    a reader first retrains)."""
    pytest.importorskip("torch")
    logic = sw.logic_of(task)
    spec = logic.retraining
    for named in (spec.has_feedback, spec.shipped_model, logic.open_review_of):
        assert callable(named.resolve()), named
    assert spec.task == logic.task


# ------------------------------------------------------------------ retraining


@pytest.fixture
def started(monkeypatch):
    """The children ``Retraining.start`` would run: (argv, env) recorded, nothing run."""
    from LesionSuiteLib import retraining

    runs = []

    class Recorded:
        def __init__(self, argv, env=None):
            runs.append((list(argv), env))

    monkeypatch.setattr(retraining, "ChildProcess", Recorded)
    return runs


def _spec(has_feedback=lambda root: True, shipped=None):
    from LesionSuiteLib.retraining import Retraining

    return Retraining(task="toy", has_feedback=has_feedback,
                      no_feedback=("nothing to learn from", "Label something first"),
                      shipped_model=lambda: shipped, model_kind="toy",
                      new_model_stem="toy_reader")


@pytest.mark.parametrize("task", sw.TASKS)
def test_each_tasks_training_command_line(task, tmp_path):
    """What every task module's ``training_command`` starts with, its own options after."""
    argv = sw.logic_of(task).training_command(tmp_path / "store", tmp_path / "init",
                                              tmp_path / "new", python="python3")
    assert argv == ["python3", "-m", "lesion_core", "--progress-lines", task, "train",
                    "--feedback", str(tmp_path / "store"), "--init", str(tmp_path / "init"),
                    "--out", str(tmp_path / "new")]


def test_retraining_defaults_follow_the_task():
    from LesionSuiteLib.later import Later
    from LesionSuiteLib.retraining import Retraining

    spec = Retraining(task="cmb", has_feedback=lambda root: True,
                      no_feedback=("nothing to learn from", "Label something first"))
    assert (spec.model_kind, spec.new_model_stem) == ("CMB", "cmb_reader")
    assert spec.shipped_model == Later("LesionSuiteLib.retraining", "shipped_model_of", "cmb")
    assert spec.shipped_model().name == "cmb_shiva_distilled"
    assert _spec().model_kind == "toy"  # a task's own values stay
    assert _spec(shipped=Path("mine")).shipped_model() == Path("mine")


def test_retraining_command_line():
    argv = _spec().command("store", "init", "new", {"--steps": 5, "--stage1": True},
                           device="cuda:1", python="py")
    assert argv == ["py", "-m", "lesion_core", "--progress-lines", "toy", "train",
                    "--feedback", "store", "--init", "init", "--out", "new", "--steps", "5",
                    "--stage1", "--device", "cuda:1"]
    assert _spec().command("s", "i", "o", python="py")[-2:] == ["--out", "o"]
    assert _spec().command("s", "i", "o", device="mps", python="py")[-2:] == \
        ["--device", "mps"]


def test_retraining_checks_the_store_and_the_start_model(tmp_path, started, monkeypatch):
    from lesion_core.errors import LesionSuiteError, ModelBundleError

    monkeypatch.setenv("LESION_SUITE_MODELS", str(tmp_path / "models"))
    with pytest.raises(LesionSuiteError, match="nothing to learn from") as raised:
        _spec(has_feedback=lambda root: []).start(tmp_path / "store")
    assert raised.value.fix == "Label something first"
    with pytest.raises(ModelBundleError, match="does not exist") as raised:
        _spec(shipped=tmp_path / "no-model").start(tmp_path / "store")
    assert raised.value.fix == "Choose a toy model folder"
    assert started == []

    (tmp_path / "shipped").mkdir()
    spec = _spec(shipped=tmp_path / "shipped")
    child, out = spec.start(tmp_path / "store", device="cpu")
    assert out.parent == tmp_path / "models" and out.name.startswith("toy_reader_")
    assert not out.exists()                          # the command makes it
    argv, env = started[0]
    assert argv[-8:] == ["--feedback", str(tmp_path / "store"), "--init",
                         str(tmp_path / "shipped"), "--out", str(out), "--device", "cpu"]
    assert "PYTHONPATH" in env
    assert spec.default_feedback_root() == tmp_path / "feedback" / "toy"


@pytest.mark.parametrize("task, options, flags", [
    ("wmh", {"steps": 3}, ["--steps", "3"]),
    ("cmb", {"stage1": True}, ["--stage1"]),
    ("ich", {}, []),
])
def test_every_task_retrains_on_the_device_it_is_given(task, options, flags, tmp_path,
                                                       started, monkeypatch):
    """The hub's device reaches ``<task> train`` for every task (CMB and ICH ignored it)."""
    from dataclasses import replace

    logic = sw.logic_of(task)
    spec = replace(logic.retraining, has_feedback=lambda root: True)
    monkeypatch.setattr(type(logic), "retraining", spec)
    (tmp_path / "init").mkdir()
    _, out = logic.start_training(tmp_path / "store", tmp_path / "init", tmp_path / "new",
                                  device="cuda:0", **options)
    assert out == tmp_path / "new"
    argv = started[0][0]
    assert argv[4:6] == [task, "train"]
    assert argv[12:] == flags + ["--device", "cuda:0"]
    assert logic.training_command("s", "i", "o", device="cpu", python="py", **options) == \
        ["py", "-m", "lesion_core", "--progress-lines", task, "train", "--feedback", "s",
         "--init", "i", "--out", "o", *flags, "--device", "cpu"]


# ------------------------------------------------------------------ the task Logic base


class ToyOutputs:
    """A toy task's outputs: ``count.txt`` (a number) written by the stand-in child."""

    model_id, model_version = "toy_model", "2.0"

    def __init__(self, count: int, grid):
        self.count, self.grid = count, grid

    @classmethod
    def read(cls, folder, grid) -> "ToyOutputs":
        return cls(int((Path(folder) / "count.txt").read_text()), grid)


class ToyResult:
    def __init__(self, input_node, nodes):
        self.input, self.nodes = input_node, nodes
        self.first, self.second = nodes


def _toy_logic(fail_after_first: bool = False):
    from LesionSuiteLib.task_logic import TaskLogic

    class ToyLogic(TaskLogic):
        task = "toy"
        input_kind = "toy"
        outputs_type = ToyOutputs
        result_files = {"first": "_toy.tsv", "second": "_toy_2.tsv"}

        @classmethod
        def prediction_options(cls, model_folder=None, device=None, fast=False):
            return {"--model": model_folder, "--fast": fast, "--device": device}

        def add_result_nodes(self, input_volume_node, outputs):
            scene = input_volume_node.GetScene()
            with self.adding_results(input_volume_node, outputs) as created:
                first = scene.AddNewNodeByClass("vtkMRMLTableNode", f"count {outputs.count}")
                created.append(first)
                if fail_after_first:
                    raise RuntimeError("the second node could not be made")
                created.append(scene.AddNewNodeByClass("vtkMRMLTableNode", "second"))
            return ToyResult(input_volume_node, created)

    return ToyLogic()


@pytest.fixture
def toy_node(mrml_scene):
    import numpy as np

    from lesion_core.volume import Volume
    from LesionSuiteLib import mrml_bridge as mb

    return mb.volume_to_node(mrml_scene, Volume(np.zeros((4, 5, 6), np.float32),
                                                np.diag([2.0, 2.0, 3.0, 1.0])), "toy in")


def test_the_prediction_command_is_the_tasks_options_in_order():
    logic = _toy_logic()
    assert logic.prediction_command("in.nii.gz", "out", "m", "cuda", "e.json", "py",
                                    fast=True) == [
        "py", "-m", "lesion_core", "--progress-lines", "--error-json", "e.json", "toy",
        "predict", "in.nii.gz", "--out", "out", "--model", "m", "--fast", "--device", "cuda"]
    with pytest.raises(TypeError):  # an option the task does not take
        logic.prediction_command("in", "out", slow=True)


def test_a_task_without_options_of_its_own_gets_model_and_device():
    from LesionSuiteLib.task_logic import TaskLogic

    class Plain(TaskLogic):
        task = "plain"

    assert Plain.prediction_command("in", "out", "m", "cpu", python="py")[-5:] == [
        "out", "--model", "m", "--device", "cpu"]
    assert Plain.prediction_command("in", "out", python="py")[-2:] == ["--out", "out"]
    with pytest.raises(TypeError):  # an option the task does not take
        Plain.prediction_command("in", "out", fast=True)


def test_a_child_run_adds_tagged_nodes_under_the_input_transform(toy_node, mrml_scene,
                                                                 tmp_path):
    import sys

    logic = _toy_logic()
    transform = mrml_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "t")
    toy_node.SetAndObserveTransformNodeID(transform.GetID())
    seen = []

    def command(image, out, error):
        seen.append((image.name, out.name, error.name, image.is_file()))
        return [sys.executable, "-c", "import pathlib, sys; d = pathlib.Path(sys.argv[1]); "
                "d.mkdir(); (d / 'count.txt').write_text('7')", str(out)]

    job = logic.start_in_child(toy_node, command, extra="ignored by the toy")
    assert seen == [("input.nii.gz", "out", "error.json", True)]
    assert job.task == "TOY" and job.finish_options == {"extra": "ignored by the toy"}
    assert job.wait(60) == 0, job.log_tail()
    with pytest.raises(TypeError):  # the toy's result_nodes takes no option
        logic.finish_prediction(job)
    assert not job.work_dir.exists()

    job = logic.start_in_child(toy_node, command)
    result = logic.wait_for(job, timeout=60)
    assert result.first.GetName() == "count 7" and not job.work_dir.exists()
    for node in result.nodes:
        assert node.GetAttribute("LesionSuite.TOY.Result") == "toy_model 2.0"
        assert node.GetAttribute("LesionSuite.TOY.InputNodeID") == toy_node.GetID()
    assert logic.result_attribute == "LesionSuite.TOY.Result"


def test_nodes_are_added_all_or_none(toy_node, mrml_scene, tmp_path):
    from lesion_core.errors import InvalidImageError

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "count.txt").write_text("3")
    before = mrml_scene.GetNumberOfNodes()
    with pytest.raises(RuntimeError, match="second node"):
        _toy_logic(fail_after_first=True).load_results(toy_node, tmp_path / "out")
    assert mrml_scene.GetNumberOfNodes() == before
    with pytest.raises(InvalidImageError, match="no toy volume is selected") as raised:
        _toy_logic().load_results(None, tmp_path / "out")
    assert "label map" in raised.value.fix
    result = _toy_logic().load_results(toy_node, tmp_path / "out")
    assert mrml_scene.GetNumberOfNodes() == before + 2
    paths = _toy_logic().save_results(result, tmp_path / "saved")
    assert sorted(p.name for p in paths.values()) == ["toy_in_toy.tsv", "toy_in_toy_2.tsv"]
    _toy_logic().remove_result_nodes(result)
    assert [node.GetScene() for node in result.nodes] == [None, None]


# ------------------------------------------------------------------ the review base


def _toy_review_type():
    from LesionSuiteLib.case_review import CaseReview

    class ToyReview(CaseReview):
        default_modality = "TOY"

        def __init__(self, case, table_node=None, **kwargs):
            super().__init__(case, **kwargs)
            self.table_node = table_node
            self.marks = {}
            self.reload()

        @classmethod
        def result_arguments(cls, result, opened):
            return {"table_node": result.first}

        def reload(self):
            state = self.read_standing(lambda: self.case.state().of_kind("toy.mark"))
            self.marks = {target: r.payload["value"] for target, r in state.items()}
            self.show_column(self.table_node, "mark", [self.marks.get(t, "")
                                                       for t in ("a", "b", "c")])
            return self.marks

        def mark(self, target, value):
            self.store_image()
            return self.wrote(self.case.record("toy.mark", target, {"value": value},
                                               reader=self.reader, model_id=self.model_id))

    return ToyReview


def test_the_review_base_keeps_the_case_the_undo_stack_and_the_image(toy_node, mrml_scene,
                                                                     tmp_path):
    from LesionSuiteLib import mrml_bridge as mb

    table = mb.rows_to_table(mrml_scene, [{"name": n, "mark": ""} for n in "ab"], name="t",
                             columns=("name", "mark"))
    result = ToyResult(toy_node, [table, None])
    result.model_id, result.model_version = "toy_model", "2.0"
    review = _toy_review_type().for_result(result, tmp_path / "store", reader="dr-t")
    assert review.case_id.startswith("toy_in-") and not review.can_undo
    assert not review.case.folder.exists() and review.modality == "TOY"
    review.mark("a", "x")
    review.mark("b", "y")
    review.mark("a", "z")
    info = review.case.info()
    assert info["modality"] == "TOY" and Path(info["image"]).is_file() and review.image is None
    assert [r["mark"] for r in mb.table_to_rows(table)] == ["z", "y"]  # the 2 rows it has
    assert review.undo() and review.marks == {"a": "x", "b": "y"}
    assert [r.kind for r in review.case.records()][-1] == "undo"
    assert review.undo() and review.undo() and not review.undo() and review.marks == {}
    assert {(r.reader, r.model_id) for r in review.case.records()} == {("dr-t", "toy_model")}

    # A torn last line is reported by the review, not warned about.
    with open(review.case.records_path, "ab") as handle:
        handle.write(b'{"record_id": "cut')
    again = _toy_review_type().for_result(result, tmp_path / "store")
    assert len(again.skipped_lines) == 1 and again.reader is None
