"""The generate demo's code on a tiny configuration (seconds): the GAN's alternating steps
move both losses and keep them finite, the samples and the judge's verdict have the right
shapes, and the PNG is written; `graphcnn demo --task generate` is offered."""
import numpy as np

import graphcnn as gc
from graphcnn.demos import TASKS, generate


def test_tiny_gan_trains_samples_judges_and_draws(tmp_path):
    cfg = generate.GanConfig(image_size=8, nz=4, ngf=4, ndf=4, epochs=2, batch_size=16,
                             lr=2e-3, seed=1)
    X, _ = generate.digits_for_gan(8)
    assert X.shape[1:] == (1, 8, 8) and X.min() >= -1 and X.max() <= 1 and X.min() < -0.9
    X = X[:70]
    epochs_seen = []
    run = generate.train_gan(X, cfg, lambda r: epochs_seen.append(len(r.g_losses)))
    assert epochs_seen == [5, 10]                 # 4 batches of 16 and the last one of 6
    # the generator ends with the running average of its weights
    assert set(run.averaged) == set(run.generator.trainable_parameters())
    for name, average in run.averaged.items():
        np.testing.assert_array_equal(run.generator.parameters()[name], average)
    d, g = np.array(run.d_losses), np.array(run.g_losses)
    assert d.shape == g.shape == (10,) and np.isfinite(d).all() and np.isfinite(g).all()
    assert np.ptp(d) > 1e-3 and np.ptp(g) > 1e-3           # both moving
    assert d[0] > 1.0                                       # ~ 2 log 2 at the start
    # the models trained are the ones the run hands back (the combined model's arrays)
    assert run.generator.outputs[0].shape == (None, 1, 8, 8)

    images = generate.sample(run.generator, 7, cfg.nz, seed=2, batch_size=5)
    assert images.shape == (7, 1, 8, 8) and np.abs(images).max() <= 1.0
    again = generate.sample(run.generator, 7, cfg.nz, seed=2, batch_size=7)
    np.testing.assert_allclose(images, again, rtol=1e-5, atol=1e-6)   # padded last batch

    from graphcnn.demos.classify import lenet_trainer
    gc.manual_seed(0)
    judge = lenet_trainer(gc.models.lenet5(), lr=0.05, epochs=1, augment=None)
    verdict = generate.judge(judge, images, threshold=0.0)
    assert verdict["histogram"].shape == (10,) and verdict["histogram"].sum() == 7
    assert verdict["confident_share"] == 1.0 and 1 <= verdict["classes_covered"] <= 7
    assert verdict["confidence"].shape == (7,) and (verdict["confidence"] <= 1).all()

    png = generate.save_grid(images, verdict, run, tmp_path / "grid" / "digits.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_demo_task_is_registered():
    assert "generate" in TASKS
    from graphcnn.cli import build_parser
    args = build_parser().parse_args(["demo", "--task", "generate", "--epochs", "1"])
    assert args.task == "generate" and args.epochs == 1
    assert generate.DEFAULTS["lr"] == 2e-4
