from modsab.cli import main

main()
