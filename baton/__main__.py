from baton.cli.support import main

if __name__ == "__main__":
    main()
