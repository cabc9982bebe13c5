//go:build !linux

package browsercheck

import (
	"context"
	"errors"
)

// chromium is only started on Linux (process groups, /proc, Pdeathsig).
type chromium struct{ cdpURL string }

func startChromium(context.Context, string, Target) (*chromium, error) {
	return nil, errors.New("browsercheck starts Chromium on Linux only")
}

func (c *chromium) stop() error { return nil }

func chromiumFlags(Target, string) []string { return nil }
