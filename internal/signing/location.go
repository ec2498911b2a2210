package signing

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// CachedLocation returns the file to read for a CA certificate or CRL
// location from the fedmsg config. A local path is itself. For an http:// or
// https:// URL it is the copy fedmsg downloaded to cache, or, where fedmsg
// could not write cache, to ~/.local<cache>: the first of the two that can be
// opened. Nothing is ever fetched; validating tools must not depend on the
// network, and whatever keeps fedmsg's copy fresh keeps ours fresh too.
func CachedLocation(location, cache string) (string, error) {
	if !isURL(location) {
		return location, nil
	}
	if cache == "" {
		return "", fmt.Errorf("%s is a URL and no cache file is configured (URLs are never fetched)", location)
	}
	candidates := []string{cache}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".local", cache))
	}
	var errs []error
	for _, path := range candidates {
		f, err := os.Open(path)
		if err == nil {
			f.Close()
			return path, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("%s is a URL (never fetched) and no cached copy is readable: %w", location, errors.Join(errs...))
}
