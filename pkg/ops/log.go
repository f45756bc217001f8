package ops

import (
	"io"
	"log/slog"
	"strings"
)

// NewLogger returns the structured logger of a Herald process: JSON (cluster
// mode, for log pipelines) or text (a terminal), at the given level.
func NewLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
