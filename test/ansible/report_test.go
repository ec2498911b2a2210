package ansible

import (
	"encoding/json"
	"fmt"
	"strings"
)

// playbookReport is the part of Ansible's json stdout callback the tests read.
type playbookReport struct {
	Plays []struct {
		Tasks []struct {
			Task struct {
				Name string `json:"name"`
			} `json:"task"`
			Hosts map[string]struct {
				Changed bool   `json:"changed"`
				Failed  bool   `json:"failed"`
				Msg     any    `json:"msg"`
				Action  string `json:"action"`
			} `json:"hosts"`
		} `json:"tasks"`
	} `json:"plays"`
	Stats map[string]struct {
		OK          int `json:"ok"`
		Changed     int `json:"changed"`
		Failures    int `json:"failures"`
		Unreachable int `json:"unreachable"`
	} `json:"stats"`
}

func parseReport(out []byte) (*playbookReport, error) {
	var r playbookReport
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("parse ansible-playbook json output: %w", err)
	}
	return &r, nil
}

// hostFailures maps each host that failed a task to that task's name and message.
func hostFailures(out []byte) (map[string]string, error) {
	r, err := parseReport(out)
	if err != nil {
		return nil, err
	}
	failures := map[string]string{}
	for _, play := range r.Plays {
		for _, task := range play.Tasks {
			for host, res := range task.Hosts {
				if res.Failed {
					failures[host] = fmt.Sprintf("%s: %v", task.Task.Name, res.Msg)
				}
			}
		}
	}
	return failures, nil
}

// changedTasks lists "host: task" for every task that reported a change.
func (r *playbookReport) changedTasks() []string {
	var changed []string
	for _, play := range r.Plays {
		for _, task := range play.Tasks {
			for host, res := range task.Hosts {
				if res.Changed {
					changed = append(changed, host+": "+task.Task.Name)
				}
			}
		}
	}
	return changed
}

// summary is the recap, one "host ok=N changed=N failed=N unreachable=N" per host.
func (r *playbookReport) summary() string {
	var b strings.Builder
	for host, s := range r.Stats {
		fmt.Fprintf(&b, "%s ok=%d changed=%d failed=%d unreachable=%d\n", host, s.OK, s.Changed, s.Failures, s.Unreachable)
	}
	return b.String()
}
