// droverctl: the admin and debugging CLI of Drover.
import ArgumentParser

@main
struct DroverCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "droverctl",
        abstract: "Control and debug a Drover FastCGI process manager",
        discussion: """
            Run 'droverctl help <subcommand>' for what each subcommand does, with examples.
            """,
        subcommands: [StatusCommand.self, ReloadCommand.self, ReopenCommand.self, StopCommand.self,
                      RequestCommand.self])
}
