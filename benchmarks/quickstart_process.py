"""The Quick Start on the embedded default: an echo episode through a local server process."""

from envs.echo_env import EchoAction, EchoEnv

client = EchoEnv.from_process()
result = client.reset()
print(result.observation.echoed_message)
result = client.step(EchoAction(message="Hello, World!"))
print(result.observation.echoed_message)
print(result.reward)
client.close()
