"""Listening to what simulated users heard: WAV loading and the few measurements the media
tests make (cross-correlation with a reference, loudness over time, level at a frequency)."""
from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

RATE = 16000
FIXTURES = Path(__file__).parent / "fixtures"


def load(data: bytes) -> np.ndarray:
    """A WAV (16-bit) as float samples in [-1, 1], channels averaged, at its own rate."""
    with wave.open(io.BytesIO(data), "rb") as w:
        assert w.getsampwidth() == 2, "16-bit WAV expected"
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
        ch = w.getnchannels()
    return x.reshape(-1, ch).mean(axis=1) if ch > 1 else x


def fixture(name: str) -> np.ndarray:
    return load((FIXTURES / name).read_bytes())


def correlation(heard: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """Peak normalised cross-correlation of `ref` inside `heard` (1.0: an exact copy at some
    delay) and the delay in samples where it peaks."""
    assert len(heard) >= len(ref), f"heard {len(heard)} samples, reference has {len(ref)}"
    n = 1 << int(np.ceil(np.log2(len(heard) + len(ref))))
    c = np.fft.irfft(np.fft.rfft(heard, n) * np.conj(np.fft.rfft(ref, n)), n)[: len(heard) - len(ref) + 1]
    # Energy of each window of `heard` the reference could align with.
    cs = np.concatenate([[0.0], np.cumsum(heard * heard)])
    win = cs[len(ref):] - cs[: len(heard) - len(ref) + 1]
    norm = np.sqrt(np.maximum(win, 1e-12) * float(np.dot(ref, ref)))
    score = c / norm
    lag = int(np.argmax(score))
    return float(score[lag]), lag


def pieces_heard(heard: np.ndarray, ref: np.ndarray, rate: int = 8000, seconds: float = 1.0) -> list[float]:
    """How well each piece of `ref` (`seconds` long; quiet pieces skipped) is found in `heard`,
    in order. A real phone's jitter buffer may conceal or shift a frame or two (pjmedia
    discards in silence to cut delay): that breaks one whole-prompt correlation, and at most
    the piece it falls in."""
    n = int(rate * seconds)
    scores, at = [], 0
    for start in range(0, len(ref) - n + 1, n):
        piece = ref[start : start + n]
        if np.sqrt(np.mean(piece * piece)) < 0.01:
            continue
        score, lag = correlation(heard[at:], piece)
        scores.append(score)
        if score > 0.5:
            at += lag
    return scores


def loud_ms(x: np.ndarray, threshold_dbfs: float = -40.0) -> int:
    """Milliseconds of 20 ms frames louder than the threshold."""
    frames = len(x) // 320
    if frames == 0:
        return 0
    f = x[: frames * 320].reshape(frames, 320)
    rms = np.sqrt((f * f).mean(axis=1))
    return int((20 * np.log10(np.maximum(rms, 1e-9)) > threshold_dbfs).sum() * 20)


def level_at(x: np.ndarray, freq: float) -> float:
    """Level (dBFS of a sine) of one frequency in `x`."""
    if len(x) == 0:
        return -200.0
    win = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * win)) / (win.sum() / 2)
    bins = np.fft.rfftfreq(len(x), 1 / RATE)
    band = (bins > freq - 15) & (bins < freq + 15)
    return float(20 * np.log10(max(spec[band].max(), 1e-10)))


def words(text: str) -> list[str]:
    return [w for w in "".join(c.lower() if c.isalnum() or c == "'" else " " for c in text).split() if w]


def wer(said: str, heard: str) -> float:
    """Word error rate of `heard` against `said` (word-level edit distance / words said)."""
    a, b = words(said), words(heard)
    row = list(range(len(b) + 1))
    for i, wa in enumerate(a):
        prev, row[0] = row[0], i + 1
        for j, wb in enumerate(b):
            cur = row[j + 1]
            row[j + 1] = min(prev + (wa != wb), row[j] + 1, cur + 1)
            prev = cur
    return row[len(b)] / max(1, len(a))
