from openenv.cli import main

main()
