module github.com/fedora-infra/fedmsg-relay

go 1.24

require (
	github.com/hashicorp/go-hclog v1.6.3
	github.com/pebbe/zmq4 v1.4.0
	github.com/rabbitmq/amqp091-go v1.16.0
	gopkg.in/yaml.v3 v3.0.1
)

require (
	github.com/fatih/color v1.13.0 // indirect
	github.com/mattn/go-colorable v0.1.12 // indirect
	github.com/mattn/go-isatty v0.0.14 // indirect
	golang.org/x/sys v0.0.0-20220503163025-988cb79eb6c6 // indirect
)
