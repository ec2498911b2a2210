package ansible

import (
	"testing"
)

func TestZZExperiment(t *testing.T) {
	repo := localRepo(t, []string{"/tmp/exp/out/x86_64/fedmsg-relay-0.0.1-1.x86_64.rpm"})
	h := bootHost(t, "ans-exp", "", repo)
	t.Log(h.MustExec("dnf", "--version"))
	out, err := h.Exec("dnf", "-y", "install", "fedmsg-relay")
	t.Log(out, err)
	t.Log(h.MustExec("rpm", "-qa"))
}
