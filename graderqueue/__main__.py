from graderqueue.cli import main

main()
