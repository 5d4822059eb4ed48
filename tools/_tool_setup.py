"""What every tool does first: put this checkout on sys.path (so the tools run without
installing), then import ba_net, which sets threads up before Paddle loads and refuses an
unsupported Paddle or a missing OpenCV; those refusals are printed as one line, exit 2."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    import ba_net  # noqa: E402,F401
except ImportError as exc:  # Paddle missing or too old, or no OpenCV: one line with the fix, no traceback
    if exc.name not in ("paddle", "cv2"):
        raise
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
